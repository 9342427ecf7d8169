"""A broker that restarts empty (tansu's memory store): both consumers rewind, and what it had
acknowledged but nobody had read is re-published from the event stores by the consumers' own
reconciliation. Nothing accepted is lost."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from branchline_cli.reconcile_commands import reconcile_stack
from branchline_shared.embedded.ports import free_port
from branchline_shared.embedded.tansu import TansuBroker
from branchline_shared.reconcile.running import Reconciliation
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.test_reconcile import lost_by_the_broker, recorded, registration, whole_stack
from tests.support.kafka import crash
from tests.support.stack import Infra, eventually, make_settings, runtime_dir

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(180)]


@pytest.fixture
def broker() -> Iterator[TansuBroker]:
    """A broker of this test's own: restarting it must not disturb the others' topics."""
    own = TansuBroker(free_port(), runtime_dir() / f"tansu-loss-{free_port()}.log")
    own.start()
    try:
        yield own
    finally:
        own.stop()


@pytest.fixture
def loss_settings(infra: Infra, tmp_path: Path, broker: TansuBroker) -> BranchlineSettings:
    return make_settings(
        Infra(infra.postgres_admin_url, broker.bootstrap),
        tmp_path,
        reconcile_self_check_interval_s=1.0,
        reconcile_grace_s=1.0,
    )


CONSUMERS = ("audit-consumer", "followup-worker")


def repaired_count() -> float:
    """Events the consumers found missing and had re-published, whatever triggered it."""
    return sum(
        REGISTRY.get_sample_value(
            "branchline_consumer_gaps_repaired_total", {"consumer": c, "trigger": t}
        )
        or 0.0
        for c in CONSUMERS
        for t in ("periodic", "log_reset")
    )


async def all_applied(settings: BranchlineSettings, expected: int) -> Reconciliation:
    async def probe() -> Reconciliation | None:
        result, _ = await reconcile_stack(settings, grace_s=0)
        # counted per source: followup also records its own events (task creations), which
        # both consumers apply on top of intake's
        from_intake = [
            p.applied for r in result.reports for p in r.progress if p.source == "intake"
        ]
        done = result.differences == 0 and len(from_intake) == len(result.reports)
        done = done and all(applied == expected for applied in from_intake)
        return result if done else None

    return await eventually(probe, within=60, interval=1.0)


@contextlib.asynccontextmanager
async def stack(
    settings: BranchlineSettings, tokens: TokenFactory
) -> AsyncIterator[httpx.AsyncClient]:
    async with whole_stack(settings, tokens) as intake:
        yield intake


async def test_consumers_rewind_and_reconcile_after_the_broker_lost_its_log(
    loss_settings: BranchlineSettings, broker: TansuBroker
) -> None:
    settings = loss_settings
    tokens = TokenFactory(settings)
    before = repaired_count()
    async with stack(settings, tokens) as intake:
        for n in range(12):
            assert (await intake.post("/v1/events", json=registration(f"C-{n}"))).status_code == 202
        await all_applied(settings, 12)

        crash(broker)
        broker.start()  # same port, empty log: topics, offsets and groups are gone

        # accepted after the restart: published to the new log, at offsets below our positions
        assert (await intake.post("/v1/events", json=registration("C-after"))).status_code == 202
        # acknowledged by the old broker, never read by anyone: only the store still has it
        await lost_by_the_broker(settings, recorded("C-lost"))

        result = await all_applied(settings, 14)
    assert result.differences == 0
    # C-lost reached the ledger and the read models only through the consumers' own repair
    # (whether a consumer rewound or its group rejoined at the new log's start depends on
    # timing; either way nothing was skipped)
    assert repaired_count() > before
