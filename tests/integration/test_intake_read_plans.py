"""Intake's reads on generic plans (#12): a stream read (GET /v1/streams/..., the shelf's
products and staff) and the product shelf's list of streams. Each read runs against a filled
event store through a pool that records its statements (:mod:`tests.support.generic_plans`);
no statement's generic plan may read es_events or es_streams whole."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

import pytest

from branchline_intake.bootstrap import prepare_database
from branchline_shared.eventstore.postgres import PostgresEventStore
from branchline_shared.postgres.pool import PgPool, open_pool
from branchline_shared.postgres.statements import prefix_range
from branchline_shared.settings import BranchlineSettings
from tests.support.generic_plans import Recording, whole_reading_statements

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CLIENTS = 20_000

FILL = f"""
INSERT INTO es_streams (stream_id, version)
SELECT kind || '-' || n, 1
FROM generate_series(1, {CLIENTS}) AS n, unnest(ARRAY['client', 'reads', 'refusals']) AS kind;
INSERT INTO es_streams (stream_id, version)
SELECT 'product-P' || n, 1 FROM generate_series(1, 30) AS n;
INSERT INTO es_events (event_id, stream_id, stream_version, type, client_id, occurred_at,
                       recorded_at, envelope)
SELECT gen_random_uuid(), stream_id, 1, 'client.registered', 'C', now(), now(), '{{}}'::jsonb
FROM es_streams;
ANALYZE es_streams;
ANALYZE es_events;
"""

NEIGHBOURS = (
    "product-",
    "product-a",
    "product-Z",
    "product-\u00e9",
    "product-_",
    "product.x",
    "product",
    "productx",
    "product_x",
    "Product-x",
    "product%x",
    "product-x\u4e2d",
)
"""Streams a prefix's range must take or leave exactly (the unit's product ids are bounded
identifiers; the range must not rely on it)."""


@pytest.fixture
async def filled(settings: BranchlineSettings) -> AsyncIterator[PgPool]:
    await prepare_database(settings)
    pool = await open_pool(settings.intake_database_url, min_size=1, max_size=2)
    try:
        await pool.execute(FILL)
        await pool.executemany(
            "INSERT INTO es_streams (stream_id, version) VALUES ($1, 1)",
            [(s,) for s in NEIGHBOURS],
        )
        await pool.execute("INSERT INTO es_streams (stream_id, version) VALUES ('product-0', 0)")
        yield pool
    finally:
        await pool.close()


async def test_no_read_scans_the_store_on_its_generic_plan(filled: PgPool) -> None:
    statements: list[str] = []
    store = PostgresEventStore(cast(Any, Recording(filled, statements)))
    # A stream of no event: its rows' envelopes (the fill's are empty) are not decoded.
    assert await store.read_stream("client-0", from_version=1, limit=100) == []
    assert await store.stream_ids("product-")
    assert not await whole_reading_statements(filled, statements)


@pytest.mark.parametrize("prefix", ["product-", "product", "client-1", "x"])
async def test_the_streams_of_a_prefix_are_those_it_starts(filled: PgPool, prefix: str) -> None:
    """The same streams, in the same order, as ``LIKE`` with the prefix escaped did."""
    store = PostgresEventStore(filled)
    before = await filled.fetch(
        "SELECT stream_id FROM es_streams WHERE version > 0 AND stream_id LIKE $1 || '%' "
        "ORDER BY stream_id LIMIT $2",
        prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"),
        5000,
    )
    got = await store.stream_ids(prefix, limit=5000)
    assert got == [r["stream_id"] for r in before]
    assert all(s.startswith(prefix) for s in got)
    assert "product-0" not in got  # no event yet


def test_a_prefix_range_refuses_what_it_cannot_bound() -> None:
    assert prefix_range("product-") == ("product-", "product.")
    for bad in ("", "product\u00e9", "a\x7f"):
        with pytest.raises(ValueError, match="printable ASCII"):
            prefix_range(bad)
