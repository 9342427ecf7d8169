"""The benchmark's single POST with the callers' own event ids (#12): its reruns are counted
from the server's log, intake's database only, from where the measure started."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest
from bench.branchline_measures import Reruns, log_offset, reruns_in_log, with_event_id
from bench.run import MEASURES, RATIOS
from bench.workload import event_body

pytestmark = pytest.mark.unit

TIMEOUT = "ERROR:  canceling statement due to lock timeout"
DEADLOCK = "ERROR:  deadlock detected"


def _line(database: str, text: str) -> str:
    return f"2026-12-06 10:00:00.000 UTC:4242:{database}:{text}\n"


def test_reruns_are_counted_for_one_database_past_the_offset(tmp_path: Path) -> None:
    log = tmp_path / "postgres.log"
    log.write_text(_line("branchline_intake", TIMEOUT) + _line("branchline_intake", DEADLOCK))
    offset = log_offset(log)
    with log.open("a") as f:
        f.write(_line("branchline_intake", TIMEOUT))
        f.write("2026-12-06 10:00:00.000 UTC:4242:branchline_intake:STATEMENT:  WITH staged\n")
        f.write(_line("branchline_intake", TIMEOUT))
        f.write(_line("branchline_followup", TIMEOUT))
        f.write(_line("branchline_followup", DEADLOCK))
        f.write(_line("branchline_intake", DEADLOCK))
        f.write(_line("branchline_intake", "ERROR:  could not obtain lock on row in relation"))
        f.write(_line("", "LOG:  checkpoint starting: time"))
    assert reruns_in_log(log, offset, "branchline_intake") == Reruns(id_order=2, lock_cycles=1)
    assert reruns_in_log(log, 0, "branchline_intake") == Reruns(id_order=3, lock_cycles=2)
    assert reruns_in_log(log, offset, "branchline_followup") == Reruns(1, 1)


def test_no_log_counts_nothing(tmp_path: Path) -> None:
    assert log_offset(None) == 0
    assert reruns_in_log(None, 0, "branchline_intake") == Reruns(0, 0)
    assert reruns_in_log(tmp_path / "absent.log", 0, "branchline_intake") == Reruns(0, 0)


def test_each_event_of_the_line_carries_an_id_of_its_own() -> None:
    bodies = [orjson.loads(orjson.dumps(with_event_id(event_body(i, "r"), True))) for i in (1, 2)]
    ids = [uuid.UUID(body["event_id"]) for body in bodies]
    assert len(set(ids)) == 2
    assert all(i.version == 4 for i in ids)
    assert "event_id" not in with_event_id(event_body(1, "r"), False)


def test_the_line_is_in_the_report_with_its_reruns_and_ratios() -> None:
    keys = [key for key, _title, _unit in MEASURES]
    at = keys.index("bl_ids16")
    assert keys[at + 1 : at + 6] == [
        "bl_ids16_p99",
        "bl_ids16_cpu_ms",
        "bl_ids16_group",
        "bl_ids16_id_order_reruns",
        "bl_ids16_lock_cycle_reruns",
    ]
    units = {key: unit for key, _title, unit in MEASURES}
    # a count that may be 0 (the smoke test allows 0 for "times" only)
    assert units["bl_ids16_id_order_reruns"] == units["bl_ids16_lock_cycle_reruns"] == "times"
    assert RATIOS["bl_ids16"] == ["raw_tx64", "bl_single16"]
