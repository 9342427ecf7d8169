"""The benchmark's ledger verify figures (#12, Round 33): `make bench` verifies the ledger it
appended in one pass (``ledger_verify``, the figure the target is set on) and then, right
after, in two processes as ``branchline audit verify --processes 2`` does
(``ledger_verify_p2``), each with its ratios; the fork server the second one starts is
stopped after it, so each such verify pays its start as a command does."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest
from bench import run, scale

from branchline_audit.domain.verification import LedgerVerdict
from branchline_shared.settings import BranchlineSettings

pytestmark = pytest.mark.unit

VERDICT = LedgerVerdict(
    ok=True,
    entries=1000,
    head="h",
    first_bad_position=None,
    reason=None,
    checkpoints_checked=0,
    bad_checkpoint=None,
)


@dataclass
class Audit:
    ledger: object = "ledger"
    checkpoints: object = "checkpoints"
    origin: str = "branchline.test/audit"

    class signer:
        @staticmethod
        def verifier() -> str:
            return "verifier"


@pytest.mark.timeout(10)
async def test_the_ledger_is_verified_in_one_pass_then_in_two_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[int | None] = []
    stopped: list[int] = []

    async def verify_ledger(ledger: Any, checkpoints: Any, **kwargs: Any) -> LedgerVerdict:
        assert (ledger, checkpoints) == ("ledger", "checkpoints")
        segments = kwargs["segments"]
        # --processes 2 forces two segments whatever the ledger's size (min_entries 1).
        asked.append(None if segments is None else segments.processes)
        assert segments is None or segments.min_entries == 1
        return VERDICT

    monkeypatch.setattr(scale, "verify_ledger", verify_ledger)
    monkeypatch.setattr(scale, "_stop_forkserver", lambda: stopped.append(len(asked)))
    settings = BranchlineSettings()
    one = await scale._verify_seconds(Audit(), 1000, processes=1, settings=settings)
    two = await scale._verify_seconds(Audit(), 1000, processes=2, settings=settings)
    assert asked == [None, 2]
    assert stopped == [2]  # after the parallel verify only
    assert one > 0
    assert two > 0


@pytest.mark.timeout(10)
async def test_a_verify_that_fails_is_reported_not_timed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def verify_ledger(ledger: Any, checkpoints: Any, **kwargs: Any) -> LedgerVerdict:
        return replace(VERDICT, ok=False)

    stopped: list[bool] = []
    monkeypatch.setattr(scale, "verify_ledger", verify_ledger)
    monkeypatch.setattr(scale, "_stop_forkserver", lambda: stopped.append(True))
    with pytest.raises(AssertionError, match="did not verify"):
        await scale._verify_seconds(Audit(), 1000, processes=2, settings=BranchlineSettings())
    assert stopped == [True]


def test_the_two_process_verify_is_summarised_beside_the_one_pass() -> None:
    runs = [
        {"raw_copy": 100_000.0, "ledger_verify": 80_000.0, "ledger_verify_p2": 40_000.0},
        {"raw_copy": 50_000.0},
    ]
    measures = run.summarise(runs, run.PROFILES["standard"])
    ratios = measures["ledger_verify_p2"]["ratios"]
    assert measures["ledger_verify_p2"]["runs"] == [40_000]
    assert ratios["raw_copy"]["runs"] == [0.4]
    assert ratios["ledger_verify"]["runs"] == [0.5]
    assert "2 processes" in measures["ledger_verify_p2"]["title"]
    # The target stays on the one pass's figure.
    assert measures["ledger_verify"]["runs"] == [80_000]
