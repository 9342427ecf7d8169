"""The checkpointer's rounds: a round that meets a lost connection is tried again, whatever
asyncpg raised for it (#12); one that meets a bug ends the task, seen."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import asyncpg
import pytest
from prometheus_client import REGISTRY

from branchline_audit.application.checkpointing import run_checkpointer
from branchline_audit.application.context import AuditContext
from branchline_audit.domain.verification import AlteredEntry

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

ENDED_UNREAD = "cannot switch to state 12; another operation (2) is in progress"


class _Checkpoints:
    """Fails its first round with ``error``; the second round sets ``again``."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.rounds = 0
        self.again = asyncio.Event()

    async def unsigned_since(self) -> tuple[int, int, None]:
        self.rounds += 1
        if self.rounds == 1:
            raise self.error
        self.again.set()
        return 0, 0, None  # nothing unsigned: no checkpoint due


def _audit(checkpoints: _Checkpoints | _Scripted) -> AuditContext:
    return cast(AuditContext, _Audit(checkpoints))


class _Audit:
    def __init__(self, checkpoints: _Checkpoints | _Scripted) -> None:
        self.checkpoints = checkpoints
        self.checkpoint_interval_s = 60.0
        self.checkpoint_every = 1000


async def _first_of(task: asyncio.Task[Any], again: asyncio.Event) -> str:
    waiting = asyncio.ensure_future(again.wait())
    try:
        done, _ = await asyncio.wait({task, waiting}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting.cancel()
    return "again" if waiting in done else "ended"


async def test_a_round_on_a_session_ended_unread_is_tried_again() -> None:
    checkpoints = _Checkpoints(asyncpg.InternalClientError(ENDED_UNREAD))
    task = asyncio.create_task(run_checkpointer(_audit(checkpoints), poll_s=0.01))
    try:
        assert await _first_of(task, checkpoints.again) == "again"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_asyncpgs_own_bug_ends_the_checkpointer() -> None:
    error = asyncpg.InternalClientError("unknown error in protocol implementation")
    checkpoints = _Checkpoints(error)
    task = asyncio.create_task(run_checkpointer(_audit(checkpoints), poll_s=0.01))
    assert await _first_of(task, checkpoints.again) == "ended"
    with pytest.raises(asyncpg.InternalClientError):
        task.result()


async def test_a_round_refused_over_a_rewritten_ledger_is_tried_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """D-11 (Round 28): a round whose signing is refused because the ledger contradicts the
    latest signed checkpoint (UnsignedHistory, an AlteredEntry) is said and tried again; it
    does not end the task (before, any such error ended it for good)."""
    refused = AlteredEntry(20, mismatch="its hash does not lead to the signed root")
    checkpoints = _Checkpoints(refused)
    task = asyncio.create_task(run_checkpointer(_audit(checkpoints), poll_s=0.01))
    try:
        assert await _first_of(task, checkpoints.again) == "again"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert "checkpoint refused" in caplog.text
    assert "position 20 was altered" in caplog.text


class _Scripted:
    """Raises (or returns, for None) the script's items round after round; once the script
    is spent it sets ``done`` and waits for ever (the task is cancelled)."""

    def __init__(self, script: list[Exception | None]) -> None:
        self.script = list(script)
        self.done = asyncio.Event()

    async def unsigned_since(self) -> tuple[int, int, None]:
        if not self.script:
            self.done.set()
            await asyncio.Event().wait()
        step = self.script.pop(0)
        if step is not None:
            raise step
        return 0, 0, None  # a round that signs (nothing due)


async def test_a_refusal_repeated_round_after_round_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """D-11 (#12): while the ledger contradicts the latest signed checkpoint every round is
    refused; the refusal is logged at error level once per contradiction (again when it
    changes or after it cleared), its clearing once, and the metric carries the position.
    Before, every round (about once a second) logged it at error level."""
    first = AlteredEntry(20, mismatch="its hash does not lead to the signed root")
    second = AlteredEntry(30, mismatch="its hash does not lead to the signed root")
    checkpoints = _Scripted([first] * 5 + [second] * 3 + [None, None] + [second] * 2)
    caplog.set_level("DEBUG", logger="branchline_audit.application.checkpointing")
    task = asyncio.create_task(run_checkpointer(_audit(checkpoints), poll_s=0.001))
    try:
        assert await _first_of(task, checkpoints.done) == "again"
        # the last refusal stands
        position = REGISTRY.get_sample_value("branchline_audit_checkpoint_refused_position")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 3, errors
    assert "position 20 was altered" in errors[0]
    assert "position 30 was altered" in errors[1]
    assert "position 30 was altered" in errors[2]  # again, after it had cleared
    cleared = [r.getMessage() for r in caplog.records if "no longer refused" in r.getMessage()]
    assert len(cleared) == 1, cleared
    assert position == 30
