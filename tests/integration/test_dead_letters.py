"""``branchline dlq list|show|replay`` and the dead-letter gauges, on the real stack."""

from __future__ import annotations

import asyncio
import json

import pytest
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from branchline_cli.dlq_commands import list_dead_letters, parse_since
from branchline_cli.main import app as cli
from branchline_shared.kafka.consuming import DeadLetters, RawMessage
from branchline_shared.kafka.producer import make_producer
from branchline_shared.kafka.topics import declare_topics
from branchline_shared.kafka.wire import event_headers
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.test_reconcile import cli_env, recorded, registration, whole_stack
from tests.support.kafka import produce
from tests.support.stack import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(150)]


async def dlq(settings: BranchlineSettings, *args: str) -> tuple[int, str]:
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["dlq", *args], env=cli_env(settings))
    return result.exit_code, result.output


def gauge(name: str, consumer: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"consumer": consumer})


async def test_poison_is_listed_with_its_reason_and_a_fixed_failure_is_replayed_once(
    settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    settings = settings.model_copy(update={"dead_letter_gauge_interval_s": 0.5})
    topics = declare_topics(settings)
    async with whole_stack(settings, tokens) as intake:
        assert (await intake.post("/v1/events", json=registration("C-1"))).status_code == 202
        # a poison message: both consumers dead-letter it, with the reason
        await produce(settings.kafka_bootstrap, topics.intake_events.name, [(b"C-x", b"{oops")])
        # an event the worker failed on earlier (a bug since fixed): dead-lettered as the
        # worker does it, never applied
        failed = recorded("C-fixed")
        producer = make_producer(settings, client_id="test-dlq-writer")
        await producer.start()
        try:
            await DeadLetters(producer, topics.followup_worker_dlq.name, "followup-worker").send(
                RawMessage(
                    topics.intake_events.name,
                    2,
                    41,
                    b"C-fixed",
                    failed.model_dump_json().encode(),
                    event_headers(failed, 4242),
                ),
                "projection failed: RuntimeError('a bug since fixed')",
            )
        finally:
            await producer.stop()

        async def three_letters() -> list[object] | None:
            listed = await list_dead_letters(settings)
            return listed if len(listed) == 3 else None  # type: ignore[return-value]

        await eventually(three_letters, within=30, interval=0.5)
        code, output = await dlq(settings, "list")
        assert code == 0, output
        assert output.count("not a Branchline event envelope") == 2  # one per consumer
        assert f"{topics.intake_events.name}:2:41" in output  # where the fixed one came from
        assert "3 dead letters, 3 pending" in output
        code, output = await dlq(settings, "list", "--consumer", "audit-consumer")
        assert "1 dead letters, 1 pending" in output

        # alert-ready gauges of the running worker
        await eventually(
            lambda: asyncio.sleep(
                0, gauge("branchline_dead_letters_pending", "followup-worker") == 2
            ),
            within=20,
        )
        assert (gauge("branchline_dead_letter_oldest_age_seconds", "followup-worker") or 0) >= 0

        code, output = await dlq(settings, "show", str(failed.event_id))
        assert code == 0, output
        shown = json.loads(output)
        assert shown["reason"] == "projection failed: RuntimeError('a bug since fixed')"
        assert shown["source"] == {"topic": topics.intake_events.name, "partition": 2, "offset": 41}
        assert shown["value"]["event_id"] == str(failed.event_id)

        code, output = await dlq(settings, "replay", "--all", "--consumer", "followup-worker")
        assert code == 1  # the poison message still fails, with its reason
        assert "applied" in output
        assert "failed: not a Branchline event envelope" in output
        code, output = await dlq(settings, "replay", str(failed.event_id))
        assert code == 0, output
        assert "already applied" in output  # at most once

        code, output = await dlq(settings, "list", "--consumer", "followup-worker")
        assert "2 dead letters, 1 pending" in output
        await eventually(
            lambda: asyncio.sleep(
                0, gauge("branchline_dead_letters_pending", "followup-worker") == 1
            ),
            within=20,
        )
        code, output = await dlq(settings, "list", "--since", "1d")
        assert "3 dead letters" in output


def test_since_takes_a_time_or_an_age() -> None:
    from datetime import UTC, datetime

    now = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)
    assert parse_since("2h", now=now) == datetime(2026, 12, 3, 8, 0, tzinfo=UTC)
    assert parse_since("2026-12-01T00:00:00+08:00") == datetime(2026, 11, 30, 16, 0, tzinfo=UTC)
    assert parse_since(None) is None
    with pytest.raises(Exception, match="age like"):
        parse_since("yesterday")
