"""The production shape of docker-compose.yml (its syntax is checked against the Compose
Specification's JSON Schema by `make compose-check`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def test_three_kraft_brokers_with_replication_3_and_min_isr_2(compose: dict[str, Any]) -> None:
    brokers = {n: s for n, s in compose["services"].items() if n.startswith("kafka-")}
    assert len(brokers) == 3
    for service in brokers.values():
        env = service["environment"]
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, no ZooKeeper
        assert env["KAFKA_DEFAULT_REPLICATION_FACTOR"] == "3"
        assert env["KAFKA_MIN_INSYNC_REPLICAS"] == "2"
        assert len(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")) == 3
    assert len({s["environment"]["KAFKA_NODE_ID"] for s in brokers.values()}) == 3


def test_every_component_runs_from_the_one_image_in_production_mode(
    compose: dict[str, Any],
) -> None:
    from branchline_cli.components import Component

    components = {component.value for component in Component}
    found = {}
    for service in compose["services"].values():
        command = service.get("command") or []
        if command[:1] == ["run"]:
            assert service["build"]["dockerfile"] == "deploy/Dockerfile"
            env = service["environment"]
            assert env["BRANCHLINE_ENVIRONMENT"] == "production"
            assert env["BRANCHLINE_DEV_MODE"] == "false"
            assert "BRANCHLINE_JWT_SECRET" in env
            assert "BRANCHLINE_MASTER_KEY" in env  # production refuses to start without them
            assert env["BRANCHLINE_TOPIC_REPLICATION_FACTOR"] == "3"
            assert env["BRANCHLINE_TOPIC_MIN_INSYNC_REPLICAS"] == "2"
            found[command[1]] = service
    assert set(found) == components
    for name in ("audit-api", "audit-consumer"):  # production refuses to invent a log key
        assert found[name]["environment"]["BRANCHLINE_AUDIT_SIGNING_KEY_FILE"]
        assert found[name]["secrets"] == ["audit-signing-key"]
    assert (ROOT / "deploy" / "Dockerfile").exists()


def test_component_names_match_the_cli() -> None:
    from branchline_cli.components import Component

    compose_text = (ROOT / "docker-compose.yml").read_text()
    for component in Component:
        assert f'["run", "{component.value}"]' in compose_text


def test_postgres_checkpoints_on_time_not_on_wal_volume_at_the_steady_rate(
    compose: dict[str, Any],
) -> None:
    """#12: ~15 MB/s of WAL at ~1,000 events/s; with the default 1GB a checkpoint every ~35 s."""
    command = compose["services"]["postgres"]["command"]
    assert command[0] == "postgres"
    assert "max_wal_size=8GB" in command


def test_postgres_page_cache_is_sized_for_the_steady_load(compose: dict[str, Any]) -> None:
    """#12: at PostgreSQL's default 128 MB the random-key indexes of a steady load outgrew the
    cache within minutes (docs/performance.md, Round 13)."""
    command = compose["services"]["postgres"]["command"]
    assert "shared_buffers=1GB" in command


def test_every_component_runs_under_an_init_as_pid_1(compose: dict[str, Any]) -> None:
    """Without one the component is PID 1, and the kernel drops a SIGTERM that arrives before
    its handler is installed (docs/reliability.md, "Graceful shutdown")."""
    runs = [s for s in compose["services"].values() if (s.get("command") or [])[:1] == ["run"]]
    assert runs
    assert all(service.get("init") is True for service in runs)


def _seconds(duration: str) -> float:
    assert duration.endswith("s"), duration
    assert duration[:-1].isdigit(), duration
    return float(duration[:-1])


def test_every_component_may_finish_a_clean_stop_before_it_is_killed(
    compose: dict[str, Any],
) -> None:
    """The grace period covers a stop's whole budget at the defaults (docs/reliability.md,
    "Graceful shutdown"): Docker's own 10 s would SIGKILL a stop with the broker down. The
    followup worker's budget counts its relay's drain after its consumer's stop (Round 36:
    2 + 30 + 10 + 3 = 45 s, which was the whole 45 s period); the stop's patiences lie within
    these bounds and add nothing."""
    from branchline_shared.settings.audit import AuditSettings
    from branchline_shared.settings.common import CommonSettings
    from branchline_shared.settings.followup import FollowupSettings

    fields = CommonSettings.model_fields
    api_budget = sum(
        float(fields[name].default)
        for name in (
            "shutdown_drain_s",
            "shutdown_requests_timeout_s",
            "shutdown_flush_timeout_s",
            "kafka_producer_stop_flush_s",
        )
    )
    worker = FollowupSettings.model_fields["followup_worker_stop_timeout_s"].default
    worker_budget = sum(
        float(fields[name].default)
        for name in ("shutdown_drain_s", "shutdown_flush_timeout_s", "kafka_producer_stop_flush_s")
    ) + float(worker)
    # the patiences end their phase before its bound: they add nothing to the budget
    relay_patience = float(fields["relay_stop_patience_s"].default)
    assert relay_patience < float(fields["shutdown_flush_timeout_s"].default)
    consumer_patience = float(fields["consumer_stop_patience_s"].default)
    assert consumer_patience < float(worker)
    assert consumer_patience < float(
        AuditSettings.model_fields["audit_consumer_stop_timeout_s"].default
    )
    runs = [s for s in compose["services"].values() if (s.get("command") or [])[:1] == ["run"]]
    assert runs
    for service in runs:
        grace = _seconds(service.get("stop_grace_period", "10s"))
        assert grace > max(api_budget, worker_budget)
