"""bench.profile_followup_pg's table of the followup database's work per event (#12, Round 35):
rows written per table, the index entries they maintained, the indexes the load read."""

from __future__ import annotations

import pytest
from bench.profile_followup_pg import Snapshot, statement_text, table_rows, table_text, wait_text

pytestmark = pytest.mark.unit


def test_each_written_tables_rows_and_index_entries_are_per_event_the_most_entries_first() -> None:
    before = Snapshot(
        tables={"t_ins": (10, 0, 0, 0), "t_upd": (0, 5, 0, 0), "t_idle": (3, 3, 3, 3)},
        indexes={"t_ins": {"t_ins_pkey": 7}, "t_upd": {"t_upd_pkey": 0, "t_upd_part": 0}},
    )
    after = Snapshot(
        tables={
            "t_ins": (30, 0, 0, 0),  # 20 inserts, 2 indexes: 40 entries
            "t_upd": (10, 25, 15, 10),  # 10 ins, 20 upd of them 15 HOT, 10 del; 2 indexes
            "t_idle": (3, 3, 3, 3),  # nothing written, nothing read: left out
            "t_new": (0, 0, 0, 0),
        },
        indexes={
            "t_ins": {"t_ins_pkey": 27, "t_ins_other": 0},
            "t_upd": {"t_upd_pkey": 0, "t_upd_part": 0},
            "t_new": {"t_new_pkey": 10},  # read only
        },
    )
    rows = table_rows(before, after, events=10)
    assert [r.table for r in rows] == ["t_ins", "t_upd", "t_new"]
    ins, upd, new = rows
    assert (ins.inserted, ins.indexes, ins.entries) == (2.0, 2, 4.0)
    assert ins.scanned == {"t_ins_pkey": 2.0}
    # an insert and a non-HOT update each take an entry in every index; HOT and deletes none
    assert (upd.inserted, upd.updated, upd.hot, upd.deleted) == (1.0, 2.0, 1.5, 1.0)
    assert upd.entries == (10 + 20 - 15) * 2 / 10
    assert (new.entries, new.scanned) == (0.0, {"t_new_pkey": 1.0})
    text = table_text(rows)
    assert text[2].startswith("| t_ins | 2.00 | 0.00 (0.00) | 0.00 | 2 | 4.00 | t_ins_pkey 2.00 |")
    assert text[-1] == "| all | rows written 6.00 | | | | 7.00 | |"


def test_statements_are_per_event_the_most_time_first_and_those_not_run_left_out() -> None:
    before = Snapshot(statements={1: ("SELECT 1", 5, 5, 1.0), 2: ("INSERT x", 0, 0, 0.0)})
    after = Snapshot(
        statements={
            1: ("SELECT 1", 15, 15, 3.0),  # 10 calls, 2 ms
            2: ("INSERT  x\n", 4, 40, 8.0),  # 4 calls, 8 ms
            3: ("SELECT idle", 0, 0, 0.0),
        }
    )
    lines = statement_text(before, after, events=100)
    assert lines[0] == "statements: 0.14 per event, execution 100.0 µs per event"
    assert lines[3] == "| 80.0 | 0.040 | 0.40 | INSERT x |"
    assert lines[4] == "| 20.0 | 0.100 | 0.10 | SELECT 1 |"
    assert len(lines) == 5


def test_wait_samples_are_shares_of_the_busy_backends_by_wait_and_statement_most_first() -> None:
    samples = [
        [("CPU", "WITH given AS (\n SELECT"), ("Lock:advisory", "WITH given AS ( SELECT")],
        [("CPU", "WITH given AS ( SELECT"), ("IO:WalSync", "COMMIT")],
        [],  # nothing busy
        [("CPU", "WITH w0 AS (INSERT")],
    ]
    lines = wait_text(samples)
    assert lines[0] == "waits: 4 samples, 1.25 busy backends a sample"
    assert lines[3] == "| 0.500 | 40.0 % | CPU | WITH given AS ( SELECT |"
    assert lines[4:] == [
        "| 0.250 | 20.0 % | CPU | WITH w0 AS (INSERT |",
        "| 0.250 | 20.0 % | IO:WalSync | COMMIT |",
        "| 0.250 | 20.0 % | Lock:advisory | WITH given AS ( SELECT |",
    ]
