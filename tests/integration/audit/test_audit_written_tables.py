"""The audit consumer's probe locks every table an append writes (#12, Round 32): the tables
the appends of a whole example journey really write (every event type, a shelf and staff,
erasures and shreddings of a client and of a member of staff, gifts; in one batch and one
at a time, with their store positions) are all in ``APPEND_WRITTEN_TABLES``. A table written
and not listed is a table whose ``SHARE`` lock elsewhere cancels an append while the probe
answers: a lone event would be dead-lettered. The listed tables this run never writes are
printed, not failed on."""

from __future__ import annotations

from datetime import timedelta

import pytest

from branchline_audit.adapters.ledger import APPEND_WRITTEN_TABLES
from branchline_audit.application.recording import record_events
from branchline_shared.clock import FixedClock
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import T0, audit_context, quick_settings, superuser
from tests.support.examples import EXAMPLE_JOURNEY, EXAMPLE_SHELF, recorded_steps
from tests.support.written_tables import assert_all_listed, record_writes, resolved, written

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


async def test_every_table_an_append_writes_is_in_the_probes_list(
    settings: BranchlineSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    s = quick_settings(settings)
    clock = FixedClock(T0)
    shelf = recorded_steps(EXAMPLE_SHELF, "unused", T0 - timedelta(days=30))
    batched = recorded_steps(EXAMPLE_JOURNEY, "C-BATCHED", T0 - timedelta(days=20))
    alone = recorded_steps(EXAMPLE_JOURNEY, "C-ALONE", T0 - timedelta(days=10))
    events = shelf + batched + alone
    positions = {e.event_id: SourcePosition(e.source, n + 1) for n, e in enumerate(events)}
    async with audit_context(s, clock=clock) as audit, superuser(s) as su:
        assert await record_writes(su) >= len(APPEND_WRITTEN_TABLES)
        appended = await record_events(audit.ledger, clock, shelf + batched, positions)
        for event in alone:
            appended += await record_events(audit.ledger, clock, [event], positions)
        appended += await record_events(audit.ledger, clock, alone[:3], positions)  # again
        assert appended == len(events)
        listed = await resolved(audit.ledger.pool, [t for t, _ in APPEND_WRITTEN_TABLES])  # type: ignore[attr-defined]
        seen = await written(su)
    report = assert_all_listed("audit APPEND_WRITTEN_TABLES", listed, seen, "public.audit_ledger")
    with capsys.disabled():
        print("\n" + report)
