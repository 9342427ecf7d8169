"""The plan reader of the generic-plan tests (#12) finds whole reads and only those."""

from __future__ import annotations

import pytest
from tests.support.generic_plans import whole_reads

WALK = """Limit  (cost=0.41..359.25 rows=30 width=12)
  ->  Index Scan using es_streams_pkey on es_streams  (cost=0.41..3588.72 rows=300 width=12)
        Filter: ((version > 0) AND (stream_id ~~ ($1 || '%'::text)))"""
RANGE = """Sort  (cost=1.1..1.2 rows=30 width=12)
  ->  Bitmap Heap Scan on es_streams  (cost=0.41..3588.72 rows=300 width=12)
        Recheck Cond: ((stream_id ~>=~ $1) AND (stream_id ~<~ $2))
        Filter: (version > 0)
        ->  Bitmap Index Scan on es_streams_prefix  (cost=0.00..4.32 rows=4 width=0)
              Index Cond: ((stream_id ~>=~ $1) AND (stream_id ~<~ $2))"""
NEWEST = """Limit  (cost=0.28..0.32 rows=1 width=43)
  ->  Index Scan Backward using audit_checkpoints_pkey on audit_checkpoints  (cost=0.28..158.03)"""
MIXED = """Hash Join  (cost=1..2 rows=3 width=8)
  ->  Seq Scan on fu_staff  (cost=0.00..1.50 rows=50 width=8)
  ->  Index Scan using fu_tasks_of_client on fu_tasks t  (cost=0.29..8.31 rows=1 width=43)
        Index Cond: (client_id = $1)
        Filter: (status = 'open'::text)"""


def test_whole_reads() -> None:
    assert whole_reads(WALK) == {"es_streams"}
    assert whole_reads(RANGE) == set()
    assert whole_reads(NEWEST) == set()
    assert whole_reads(MIXED) == {"fu_staff"}


def _walk(index: str, table: str, *details: str, backward: bool = False) -> str:
    """A one-walk plan under a ``Limit``, as ``EXPLAIN`` prints it."""
    scan = "Index Scan Backward" if backward else "Index Scan"
    lines = [
        "Limit  (cost=0.29..12.61 rows=50 width=40)",
        f"  ->  {scan} using {index} on {table}  (cost=0.29..2463.29 rows=10000 width=40)",
        *(f"        {d}" for d in details),
    ]
    return "\n".join(lines)


FLAGGED = {
    "the old retention read (the primary key from a position to the ledger's end)": _walk(
        "audit_ledger_pkey",
        "audit_ledger",
        'Index Cond: ("position" > $2)',
        "Filter: ((pruned_at IS NULL) AND (appended_at < $1))",
    ),
    "a backward walk bounded from above only": _walk(
        "audit_ledger_pkey",
        "audit_ledger",
        'Index Cond: ("position" < $1)',
        "Filter: (client_id = $2)",
        backward=True,
    ),
    "a keyset page's row comparison alone (the task list by status, a next page)": _walk(
        "fu_tasks_by_due",
        "fu_tasks",
        "Index Cond: (ROW(due_at, id) > ROW((($2)::text)::timestamp with time zone, $3))",
        "Filter: (status = $1)",
    ),
    "an equality on a later column only": _walk(
        "audit_ledger_appended_client",
        "audit_ledger",
        "Index Cond: ((appended_at > $1) AND (client_id = $2))",
        "Filter: (pruned_at IS NULL)",
    ),
    "an unreadable condition": _walk(
        "es_streams_pkey",
        "es_streams",
        "Index Cond: (stream_id ~~ 'client-%'::text)",
        "Filter: (version > 0)",
    ),
    "IS NOT NULL bounds nothing": _walk(
        "fu_tasks_escalated",
        "fu_tasks",
        "Index Cond: (escalated_to IS NOT NULL)",
        "Filter: (kind = $1)",
    ),
    "an expression bounded from one side": _walk(
        "fu_visits_by_start",
        "fu_visits",
        "Index Cond: (COALESCE(arrived_at, started_at) >= $1)",
        "Filter: (rm_id = $2)",
    ),
}

NOT_FLAGGED = {
    "a client's prefix, then a position": _walk(
        "audit_ledger_client",
        "audit_ledger",
        'Index Cond: ((client_id = $1) AND ("position" > $2))',
        "Filter: (pruned_at IS NULL)",
    ),
    "a keyset page with no Filter (it stops at its LIMIT)": _walk(
        "fu_tasks_by_due",
        "fu_tasks",
        "Index Cond: (ROW(due_at, id) > ROW((($1)::text)::timestamp with time zone, $2))",
    ),
    "both bounds on the leading column": _walk(
        "fu_tasks_by_due",
        "fu_tasks",
        "Index Cond: ((due_at >= $1) AND (due_at < $2))",
        "Filter: ((branch_id)::text = $3)",
    ),
    "a row comparison under an upper bound": _walk(
        "audit_ledger_appended",
        "audit_ledger",
        'Index Cond: ((appended_at < $1) AND (ROW(appended_at, "position") > ROW($3, $2)))',
        "Filter: (pruned_at IS NULL)",
    ),
    "= ANY": _walk(
        "es_streams_pkey",
        "es_streams",
        "Index Cond: (stream_id = ANY ($1))",
        "Filter: (version > 0)",
    ),
    "a join's inner probe": """Nested Loop  (cost=0.29..120.10 rows=100 width=40)
  ->  Function Scan on unnest team  (cost=0.00..0.10 rows=10 width=32)
  ->  Limit  (cost=0.29..11.90 rows=10 width=40)
        ->  Index Scan using fu_tasks_work_list on fu_tasks  (cost=0.29..240.9 rows=200 width=40)
              Index Cond: ((assignee = team.member) AND (ROW(due_at, id) > ROW($2, $3)))
              Filter: (status = $1)""",
    "an expression bounded from both sides": _walk(
        "fu_visits_by_start",
        "fu_visits",
        "Index Cond: ((COALESCE(arrived_at, started_at) >= $1) AND "
        "(COALESCE(arrived_at, started_at) < $2))",
        "Filter: (rm_id = $3)",
    ),
    "an IS NULL prefix": _walk(
        "fu_timers_pending",
        "fu_timers",
        "Index Cond: ((fired_at IS NULL) AND (fire_at > $1))",
        "Filter: (kind = $2)",
    ),
    "a status prefix, then the keyset (followup 017)": _walk(
        "fu_tasks_closed_by_status_due",
        "fu_tasks",
        "Index Cond: ((status = 'cancelled'::text) AND "
        "(ROW(due_at, id) > ROW((($1)::text)::timestamp with time zone, $2)))",
        "Filter: (kind = $3)",
    ),
}


@pytest.mark.parametrize("name", sorted(FLAGGED))
def test_a_walk_open_at_one_end_that_filters_is_a_whole_read(name: str) -> None:
    """#12: an index walk whose Index Cond leaves the leading column open at one end (or
    cannot be read) while it filters reads, for rare rows, to the index's end."""
    assert whole_reads(FLAGGED[name]) == {FLAGGED[name].split(" on ")[1].split()[0]}


@pytest.mark.parametrize("name", sorted(NOT_FLAGGED))
def test_a_pinned_or_bounded_walk_and_an_open_walk_without_filter_are_not(name: str) -> None:
    assert whole_reads(NOT_FLAGGED[name]) == set()
