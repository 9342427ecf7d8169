"""Verified in segments (processes of their own), a change at a segment's boundary gets the
one-pass verdict, in the standard fork server too. (ADR-0006, issue 6 "Tamper"; the shared
parts: tamper_support.py, conftest.py)"""

from __future__ import annotations

import random
from multiprocessing.context import ForkServerContext

import pytest

from branchline_audit.adapters import segments as segments_module
from branchline_audit.adapters.segments import verifying_context
from tests.integration.audit.audit_support import (
    behind_the_ledgers_back,
)
from tests.integration.audit.tamper.tamper_support import (
    COLUMNS,
    Built,
    by_column,
    row_at,
    segment_verifiers,
    tampered,
    verify_by,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture(autouse=True)
def verify_path() -> str:
    """Overrides conftest's three paths: these tests name their own verifications (one pass
    and segments side by side) and never read the path, so its three runs were one test
    three times (#12)."""
    return "one pass"


@pytest.mark.parametrize("position", [333, 334, 666, 667])
async def test_a_change_at_a_segment_boundary_is_located_as_in_one_pass(
    ledger_1000: Built, position: int
) -> None:
    """#12: any column of the first or last entry of a segment changed: verified in segments,
    the verdict is the one-pass verdict, whole (the segment that does not join is verified
    again from where the ones before it left the chain)."""
    settings, audit = ledger_1000
    rng = random.Random(position)
    segments = segment_verifiers(settings)
    for column in COLUMNS:
        row = await row_at(settings, position)
        sql, args = by_column(column)(row, rng)
        async with tampered(settings, row):
            await behind_the_ledgers_back(settings, sql, *args, position)
            in_segments = await verify_by(audit, segments)
            one_pass = await verify_by(audit, None)
        assert in_segments == one_pass, column
        assert one_pass.first_bad_position == position, (column, one_pass.reason)
    for change in (
        "DELETE FROM audit_ledger WHERE position = $1",
        "UPDATE audit_ledger SET prev_hash = decode(repeat('ab', 32), 'hex') WHERE position = $1",
    ):
        row = await row_at(settings, position)
        async with tampered(settings, row):
            await behind_the_ledgers_back(settings, change, position)
            in_segments = await verify_by(audit, segments)
            one_pass = await verify_by(audit, None)
        assert in_segments == one_pass, change
        assert one_pass.first_bad_position == position, (change, one_pass.reason)
    assert (await verify_by(audit, segments)).ok


async def test_segments_in_the_standard_fork_server_verify_alike(
    ledger_1000: Built, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a Python other than the one whose fork-server launch the segments restate (a private
    part of ``multiprocessing``), they run in the standard fork server's processes and come to
    the one-pass verdict all the same (#12)."""
    monkeypatch.setattr(segments_module, "_LAUNCH_RESTATED_FROM", (0, 0))
    assert type(verifying_context()) is ForkServerContext
    settings, audit = ledger_1000
    segments = segment_verifiers(settings)
    row = await row_at(settings, 334)
    async with tampered(settings, row):
        await behind_the_ledgers_back(settings, "DELETE FROM audit_ledger WHERE position = $1", 334)
        in_segments = await verify_by(audit, segments)
        one_pass = await verify_by(audit, None)
    assert one_pass.first_bad_position == 334, one_pass.reason
    assert in_segments == one_pass
    assert (await verify_by(audit, segments)).ok
