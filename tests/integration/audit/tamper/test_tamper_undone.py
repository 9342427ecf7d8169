"""A tamper made by a test is undone however the test ends: failed, cancelled, or timed out with
the shared ledger left tampered. (ADR-0006, issue 6 "Tamper"; the shared parts:
tamper_support.py, conftest.py)"""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.audit.audit_support import (
    behind_the_ledgers_back,
    superuser,
)
from tests.integration.audit.tamper.tamper_support import (
    Built,
    restore_pristine,
    row_at,
    tampered,
    verify,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def test_a_tamper_is_undone_when_the_test_fails_mid_tamper(ledger_1000: Built) -> None:
    """A check that fails while the ledger is tampered (here: raises) leaves it as it was."""
    settings, audit = ledger_1000
    row = await row_at(settings, 17)

    async def fail_mid_tamper() -> None:
        async with tampered(settings, row):
            await behind_the_ledgers_back(
                settings, "UPDATE audit_ledger SET actor_id = 'x' WHERE position = 17"
            )
            assert not (await verify(settings, audit)).ok
            raise RuntimeError("a check failed mid-tamper")

    with pytest.raises(RuntimeError, match="mid-tamper"):
        await fail_mid_tamper()
    assert (await verify(settings, audit)).ok


async def test_a_tamper_is_undone_when_the_test_is_cancelled_mid_tamper(
    ledger_1000: Built,
) -> None:
    """A test cancelled (as a timeout cancels it) while the ledger is tampered, before the
    tamper's statement returned, leaves it as it was."""
    settings, audit = ledger_1000
    row = await row_at(settings, 18)
    applied, never = asyncio.Event(), asyncio.Event()

    async def tamper_then_hang() -> None:
        async with tampered(settings, row):
            async with superuser(settings) as conn, conn.transaction():
                await conn.execute("SET LOCAL session_replication_role = replica")
                await conn.execute("DELETE FROM audit_ledger WHERE position = 18")
            applied.set()
            await never.wait()

    task = asyncio.ensure_future(tamper_then_hang())
    await applied.wait()
    assert not (await verify(settings, audit)).ok
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await verify(settings, audit)).ok


async def test_the_shared_ledger_is_put_back_after_a_test_left_it_tampered(
    ledger_1000: Built,
) -> None:
    """What the teardown of ``ledger_1000`` runs restores what a test could not (its coroutine
    never resumed after a timeout): here, tampers nobody undid."""
    settings, audit = ledger_1000
    await behind_the_ledgers_back(
        settings,
        "UPDATE audit_ledger SET event_type = 'x', position = position + 10000000 "
        "WHERE position = 40",
    )
    await behind_the_ledgers_back(
        settings, "UPDATE audit_checkpoints SET note = note || 'x' WHERE tree_size = 500"
    )
    assert not (await verify(settings, audit)).ok
    await restore_pristine(settings)
    assert (await verify(settings, audit)).ok
