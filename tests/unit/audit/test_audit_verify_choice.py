"""``branchline audit verify`` chooses segments by itself (#12): by default one process per core
(at most :data:`AUTOMATIC_MAX_PROCESSES`) for a ledger of at least
``BRANCHLINE_AUDIT_VERIFY_PARALLEL_MIN_ENTRIES`` entries, one pass below; ``1`` forces one
pass and ``N`` forces N processes whatever the size. The verdict is the one pass's either way.
"""

from __future__ import annotations

import asyncio
import copy
import pickle
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from tests.unit.audit.test_audit_fast_verify import bytes_only, rows, scanned
from tests.unit.audit.test_audit_segments import checkpoints_of

from branchline_audit.adapters import segments as segments_module
from branchline_audit.adapters.segments import AUTOMATIC_MAX_PROCESSES, ProcessSegmentVerifiers
from branchline_audit.application.verifying import verify_ledger
from branchline_audit.domain.verification import (
    LedgerVerdict,
    Segment,
    SegmentAuditor,
    SegmentResult,
    StoredCheckpoint,
)
from branchline_shared.settings import BranchlineSettings

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


def configured(processes: int, min_entries: int = 500_000) -> ProcessSegmentVerifiers:
    return ProcessSegmentVerifiers.configured(
        "postgresql://unused", "audit_writer", processes=processes, min_entries=min_entries
    )


@pytest.mark.parametrize(("cores", "chosen"), [(1, 1), (2, 2), (3, 3), (8, 8), (64, 8)])
def test_the_automatic_choice_is_one_process_per_core_at_most_eight(
    monkeypatch: pytest.MonkeyPatch, cores: int, chosen: int
) -> None:
    monkeypatch.setattr(segments_module, "default_processes", lambda: cores)
    automatic = configured(0, min_entries=123_456)
    assert (automatic.processes, automatic.min_entries) == (chosen, 123_456)
    assert chosen <= AUTOMATIC_MAX_PROCESSES


@pytest.mark.parametrize("processes", [1, 2, 3, 64])
def test_a_number_forces_that_many_processes_whatever_the_ledgers_size(
    monkeypatch: pytest.MonkeyPatch, processes: int
) -> None:
    monkeypatch.setattr(segments_module, "default_processes", lambda: 2)
    forced = configured(processes, min_entries=10**9)
    assert (forced.processes, forced.min_entries) == (processes, 1)


def test_the_settings_default_to_the_automatic_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRANCHLINE_AUDIT_VERIFY_PROCESSES", raising=False)
    monkeypatch.delenv("BRANCHLINE_AUDIT_VERIFY_PARALLEL_MIN_ENTRIES", raising=False)
    settings = BranchlineSettings()
    assert settings.audit_verify_processes == 0
    assert settings.audit_verify_parallel_min_entries == 500_000
    monkeypatch.setenv("BRANCHLINE_AUDIT_VERIFY_PROCESSES", "1")
    assert BranchlineSettings().audit_verify_processes == 1


class TableLedger:
    """The ledger's scan over stored rows in memory, as the database pages them."""

    def __init__(self, table: list[list[Any]]) -> None:
        self._table = [scanned(row) for row in table]

    async def size(self) -> int:
        return max((row[0] for row in self._table), default=0)

    async def scan_rows(
        self, *, page_size: int = 5000, after_position: int = 0, through: int | None = None
    ) -> AsyncIterator[Sequence[Any]]:
        mine = [
            copy.deepcopy(row)
            for row in self._table
            if row[0] > after_position and (through is None or row[0] <= through)
        ]
        for first in range(0, len(mine), page_size):
            yield mine[first : first + page_size]


class Checkpoints:
    def __init__(self, stored: list[StoredCheckpoint]) -> None:
        self._stored = stored

    async def all(self) -> list[StoredCheckpoint]:
        return list(self._stored)


class InProcessSegments:
    """The choice of :meth:`ProcessSegmentVerifiers.configured`, each segment verified here
    (its result through pickle, as from a process); records the segments it was given."""

    def __init__(self, ledger: TableLedger, choice: ProcessSegmentVerifiers) -> None:
        self._ledger = ledger
        self.processes = choice.processes
        self.min_entries = choice.min_entries
        self.asked: list[list[Segment]] = []

    async def verify(
        self, segments: Sequence[Segment], checkpoint_sizes: frozenset[int]
    ) -> list[SegmentResult]:
        self.asked.append(list(segments))
        out = []
        for segment in segments:
            auditor = SegmentAuditor(segment, checkpoint_sizes)
            async for page in self._ledger.scan_rows(
                after_position=segment.low, through=segment.high
            ):
                auditor.feed_rows(page)
            out.append(pickle.loads(pickle.dumps(auditor.result())))
        return out


def verified(
    table: list[list[Any]], stored: list[StoredCheckpoint], segments: InProcessSegments | None
) -> LedgerVerdict:
    ledger = segments._ledger if segments is not None else TableLedger(table)
    return asyncio.run(
        verify_ledger(ledger, Checkpoints(stored), verifier=None, origin="", segments=segments)
    )


def tampered(table: list[list[Any]], position: int) -> list[list[Any]]:
    out = copy.deepcopy(table)
    out[position - 1][2] = bytes(32)  # its hash: that entry and the link after it are bad
    return out


@pytest.mark.parametrize("tamper", [None, 10, 11, 12, 21])
@pytest.mark.parametrize(
    ("processes", "min_entries", "split"),
    [
        (0, 40, False),  # automatic, a ledger below the size: one pass
        (0, 30, True),  # automatic, a ledger of the size: one process per core
        (1, 1, False),  # forced one pass
        (3, 10**9, True),  # forced three processes, however small the ledger
    ],
)
def test_the_choice_splits_only_where_asked_and_the_verdict_is_the_one_pass(
    monkeypatch: pytest.MonkeyPatch,
    tamper: int | None,
    processes: int,
    min_entries: int,
    split: bool,
) -> None:
    monkeypatch.setattr(segments_module, "default_processes", lambda: 3)
    good = bytes_only(rows(30))
    table = good if tamper is None else tampered(good, tamper)
    stored = checkpoints_of(good, (7, 20, 30))
    one_pass = verified(table, stored, None)
    choice = InProcessSegments(TableLedger(table), configured(processes, min_entries))
    assert verified(table, stored, choice) == one_pass
    assert one_pass.ok is (tamper is None)
    # three processes: the caller verifies 1..10, the others 11..20 and 21..
    assert choice.asked == ([[Segment(10, 20), Segment(20, None)]] if split else [])
