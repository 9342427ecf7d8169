"""One altered byte in any column of any entry, or a number rewritten as another JSON type, is
located. (ADR-0006, issue 6 "Tamper"; the shared parts: tamper_support.py, conftest.py)"""

from __future__ import annotations

import random

import pytest

from tests.integration.audit.audit_support import (
    behind_the_ledgers_back,
)
from tests.integration.audit.tamper.tamper_support import (
    COLUMNS,
    EVENT,
    SIZE,
    TRIALS,
    Built,
    by_column,
    row_at,
    tampered,
    verify,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


async def test_one_altered_byte_in_any_column_is_located(
    ledger_1000: Built,
) -> None:
    settings, audit = ledger_1000
    assert (await verify(settings, audit)).ok
    rng = random.Random(2026)
    for trial in range(TRIALS):
        column = COLUMNS[trial % len(COLUMNS)]
        position = rng.choice([1, SIZE, rng.randint(1, SIZE)])
        row = await row_at(settings, position)
        sql, args = by_column(column)(row, rng)
        async with tampered(settings, row):
            await behind_the_ledgers_back(settings, sql, *args, position)
            verdict = await verify(settings, audit)
        assert not verdict.ok, (column, position)
        assert verdict.first_bad_position == position, (column, position, verdict.reason)
    assert (await verify(settings, audit)).ok  # every change was undone: the ledger verifies again


@pytest.mark.parametrize(
    "rewrite",
    [
        # 17 -> 17.0: jsonb keeps the scale; Python says 17 == 17.0
        f"jsonb_set({EVENT}, '{{stream_version}}', "
        f"to_jsonb(({EVENT}->>'stream_version')::numeric(20, 1)))",
        f"jsonb_set({EVENT}, '{{schema_version}}', 'true')",  # 1 -> true: Python says 1 == True
    ],
    ids=["int to float", "int to bool"],
)
async def test_a_number_rewritten_as_another_json_type_is_located(
    ledger_1000: Built, rewrite: str
) -> None:
    """The event column rewritten to a value Python compares equal but that is another JSON
    text (the hashed bytes hold ``17`` and ``1``) is found, by the fast path and the full
    check alike."""
    settings, audit = ledger_1000
    for position in (1, 321, SIZE):
        row = await row_at(settings, position)
        async with tampered(settings, row):
            await behind_the_ledgers_back(
                settings,
                f"UPDATE audit_ledger SET event = {rewrite} WHERE position = $1",
                position,
            )
            verdict = await verify(settings, audit)
        assert not verdict.ok, position
        assert verdict.bad_positions == (position,), verdict.reason
        assert "another JSON type" in (verdict.reason or "")
    assert (await verify(settings, audit)).ok
