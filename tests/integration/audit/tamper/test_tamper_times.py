"""The verifier's binary times: read as asyncpg reads them, and a time no append writes located,
not raised. (ADR-0006, issue 6 "Tamper"; the shared parts: tamper_support.py, conftest.py)"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from branchline_audit.domain.verification import pg_time
from tests.integration.audit.audit_support import (
    UNWRITTEN_TIMES,
    behind_the_ledgers_back,
    superuser,
)
from tests.integration.audit.tamper.tamper_support import (
    Built,
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


TIMES = (
    "2000-01-01 00:00:00+00",
    "1999-12-31 23:59:59.999999+00",
    "2024-05-01 09:00:00.25+02",
    "0001-01-01 00:00:00+00",
    "9999-12-31 23:59:59.999999+00",
    "infinity",
    "-infinity",
    "10000-01-01 00:00:00+00",
    "0001-12-31 23:59:59+00 BC",
    "4713-01-01 00:00:00+00 BC",
)


def _decoded_or_refused(decode: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "value", decode()
    except OverflowError:
        return "refused", None


@pytest.mark.parametrize("text", TIMES)
async def test_the_scans_binary_times_are_the_times_asyncpg_reads(
    ledger_1000: Built, text: str
) -> None:
    """#12: the verifier's scan reads ``appended_at`` and ``occurred_at`` as
    ``timestamptz_send``'s bytes; turned into times (for the full checks and the append
    time's head) they are exactly what asyncpg makes of the column, infinities and times
    past Python's years included (refused alike)."""
    settings, _ = ledger_1000
    async with superuser(settings) as conn:
        column = await conn.fetchval("SELECT timestamptz_send($1::text::timestamptz)", text)
        try:
            expected: tuple[str, Any] = (
                "value",
                await conn.fetchval("SELECT $1::text::timestamptz", text),
            )
        except OverflowError:
            expected = ("refused", None)
    assert type(column) is bytes
    got = _decoded_or_refused(lambda: pg_time(column))
    assert got == expected, text
    if got[0] == "value":
        assert type(got[1]) is type(expected[1])
        assert got[1].tzinfo == expected[1].tzinfo


@pytest.mark.parametrize("column", ["appended_at", "occurred_at", "pruned_at"])
@pytest.mark.parametrize("position", [250, 750])
async def test_a_time_no_append_writes_is_located_not_raised(
    ledger_1000: Built, column: str, position: int
) -> None:
    """A time column set behind the ledger's back to a time no append writes (an infinity,
    a year past 9999 or before the era) is a bad entry at its position, in one pass and in
    segments alike; verify reports it instead of failing with the time's error (#12)."""
    settings, audit = ledger_1000
    segments = segment_verifiers(settings)
    for text in UNWRITTEN_TIMES:
        row = await row_at(settings, position)
        async with tampered(settings, row):
            await behind_the_ledgers_back(
                settings,
                f"UPDATE audit_ledger SET {column} = $1::text::timestamptz WHERE position = $2",
                text,
                position,
            )
            one_pass = await verify_by(audit, None)
            in_segments = await verify_by(audit, segments)
        assert not one_pass.ok, text
        assert one_pass.first_bad_position == position, (text, one_pass.reason)
        assert in_segments == one_pass, text
    assert (await verify_by(audit, None)).ok
