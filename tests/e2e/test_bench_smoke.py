"""The benchmark's smoke profile: `make bench` must keep running (a benchmark that nothing runs
rots). It fails when the benchmark cannot run or loses a measure, never because a figure is
low: speed goals live in the benchmark's report, not in tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from bench.run import PROFILES, all_measures, all_ratios

ROOT = Path(__file__).resolve().parents[2]

INTAKE_LINES = (
    "bl_single",
    "bl_single16",
    "bl_ids16",
    "bl_ids16_resend5",
    "bl_existing",
    "bl_batch",
    "e2e_offered",
)


@pytest.mark.e2e
@pytest.mark.timeout(900)
def test_the_benchmark_runs_every_measure_and_writes_its_report(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--profile", "smoke", "--out", str(out)],
        cwd=ROOT,
        # The growth step reads memory at rest one trim interval after the consumers caught
        # up: a sleep of the interval (10 s by default) that proves nothing here. The
        # consumers still trim, at most every second instead.
        env={**os.environ, "BRANCHLINE_MALLOC_TRIM_INTERVAL_S": "1"},
        capture_output=True,
        text=True,
        timeout=880,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    machine = result["machine"]
    assert machine["cores"]
    assert machine["cpu"]
    assert machine["load_average_at_end"]
    for package in ("branchline", "eventsourcing", "psycopg", "asyncpg", "postgresql"):
        assert machine["versions"][package], package
    measures = result["measures"]
    smoke = PROFILES["smoke"]
    for key, _title, _unit in all_measures(smoke):
        entry = measures[key]
        assert len(entry["runs"]) == result["repeat"] == 1
        # A consumer that was never behind caught up in 0 s, and a worker that has applied
        # none of the fill yet holds a share of 0; everything else is a rate or a time that
        # cannot be 0, except a count of times something happened (a consumer's fetch wait
        # raised during the steady load: none is the good case).
        zero_ok = entry["unit"] in ("s", "ratio", "times")
        assert entry["min"] >= 0 if zero_ok else entry["min"] > 0, key
        assert set(entry["ratios"]) == set(all_ratios(smoke).get(key, [])), key
    # #12: the report says the steady rate beside what each consumer drains
    assert measures["e2e_offered"]["runs"] == [result["steady_rate"]["per_s"]]
    table = out.with_suffix(".md").read_text()
    assert "Drain capacity with intake idle" in table
    assert "| Branchline POST /v1/events, 64 connections (ev/s) |" in table
    # #12: the remembered-client write has a line of its own
    assert "consents to 4 clients per connection that have history (ev/s) |" in table
    # #12: the callers' own event ids have a line of their own, with its reruns
    assert "tokens, each event with its own event_id (ev/s) |" in table
    assert "| target |" in table
    # #12, Round 31: every intake line says how the intake processes split its connections
    # (per run, [n_a, n_b]), in the JSON and beside the line in the table
    for key in INTAKE_LINES:
        split = measures[key]["split"]
        assert len(split) == 1, key
        # one count per intake process (one per core by default), the same in every line
        assert len(split[0]) == len(measures["bl_single"]["split"][0]) >= 1, key
        assert sum(split[0]) == (1 if key == "bl_batch" else 64), (key, split)
    for key in set(INTAKE_LINES) - {"e2e_offered"}:
        assert [ms for ms in measures[key]["cpu_ms_by_process"][0] if ms is not None], key
    assert "| intake split |" in table
    for key in ("bl_single", "bl_batch", "ledger_append", "ledger_verify", "rebuild"):
        assert measures[key]["target"], key
