"""A refused read over HTTP (D-11: a page whose covering signed checkpoint the ledger
contradicts, ``GET /v1/audit/entries``) stores where it located the rewrite, deleting the stale
hint it supersedes (migration 011), and a second, fresh app's first refused read proves that
hint instead of halving (#12, Round 37; ``signed_leaves._last_holding_below``)."""

from __future__ import annotations

import httpx
import pytest

from branchline_audit.bootstrap import create_app
from branchline_shared.clock import FixedClock
from branchline_shared.http.auth import Role
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.audit.audit_support import (
    T0,
    audit_context,
    behind_the_ledgers_back,
    quick_settings,
    rewrite_rechaining,
    superuser,
)
from tests.integration.audit.refused_support import REWRITTEN, SIGNED, signed
from tests.support.stack import serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

LOCATED = REWRITTEN - 1
"""The last signed checkpoint that holds."""
PAGE_END = 50
"""The refused page is positions 41 to 50: each entry holds by itself and by its links (the
rewrite re-chained), only the signed checkpoint of size 50 (the smallest covering it) fails."""


async def _hints(settings: BranchlineSettings) -> list[tuple[int, int | None, int]]:
    async with superuser(settings) as conn:
        rows = await conn.fetch(
            "SELECT refused_size, held_size, failing_size FROM audit_refusal_hints ORDER BY hint_id"
        )
    return [(r["refused_size"], r["held_size"], r["failing_size"]) for r in rows]


async def _refused_page(url: str, tokens: TokenFactory) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        response = await client.get(
            "/v1/audit/entries",
            params={"cursor": str(REWRITTEN), "limit": 10},
            headers=tokens.headers(Role.AUDITOR, sub="auditor-1"),
        )
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, object] = response.json()
    assert str(body["type"]).endswith("/ledger-integrity"), body
    assert body["rule"] == "D-11", body
    detail = str(body["detail"])
    assert f"position {PAGE_END} was altered" in detail, body
    assert f"between positions {REWRITTEN} and {PAGE_END}" in detail, body
    assert f"checkpoint of tree size {LOCATED} holds" in detail, body
    assert f"entries at positions {REWRITTEN + 1} to {PAGE_END} are refused" in detail, body
    return body


async def test_a_refused_http_read_stores_its_hint_and_a_fresh_app_proves_it(
    settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    """A stale hint (a place both rewritten) is halved past by the first app's refused read,
    which stores the place it found and deletes the stale one it supersedes (the old code kept
    both: fails on it); a second app, fresh, answers the same problem from the stored hint:
    it proves only the held checkpoint's leaf (a halving of the 49 below proves 4) and
    stores nothing."""
    s = quick_settings(settings)
    async with audit_context(s, clock=FixedClock(T0)) as audit:
        await signed(audit)
    # position 40 holds event(39) (``signed`` appends event(n) at position n + 1)
    await rewrite_rechaining(
        s, REWRITTEN, f'"note":"n{REWRITTEN - 1}"'.encode(), b'"note":"rewritten"'
    )
    await behind_the_ledgers_back(
        s,
        "INSERT INTO audit_refusal_hints (refused_size, held_size, failing_size, recorded_at) "
        "VALUES ($1, 45, 46, $2)",
        SIGNED,
        T0,
    )

    first = create_app(s, clock=FixedClock(T0))
    async with serve(first) as url:
        located = await _refused_page(url, tokens)
    assert await _hints(s) == [(PAGE_END, LOCATED, REWRITTEN)]

    second = create_app(s, clock=FixedClock(T0))
    async with serve(second) as url:
        hinted = await _refused_page(url, tokens)
        fresh = second.state.audit
        assert set(fresh.signed_leaves) == {LOCATED}
        assert fresh.refusal_pairs == {PAGE_END: (LOCATED, REWRITTEN)}
    assert hinted == located
    assert await _hints(s) == [(PAGE_END, LOCATED, REWRITTEN)]
