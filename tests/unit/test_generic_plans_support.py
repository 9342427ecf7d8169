"""The plan reader of the generic-plan tests (#12) finds whole reads and only those."""

from __future__ import annotations

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
