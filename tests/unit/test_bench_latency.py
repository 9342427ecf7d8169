"""The benchmark's steady load (#12): visibility seen from outside by a poller, and one rate
for every repetition of a run."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from bench import latency
from bench.latency import Watch
from bench.run import HALF_PEAK_RULE, PROFILES, SteadyRate, arguments, render_markdown
from tests.support.bench_results import bench_result

pytestmark = pytest.mark.unit


def test_an_event_is_seen_at_the_end_of_the_first_poll_that_holds_it() -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    watch = Watch()
    watch.sent(first)
    watch.sent(second)
    watch.answered([], started=10.0, ended=10.01)
    watch.answered([str(second)], started=10.03, ended=10.05)
    assert watch.seen == {second: 10.05}
    assert watch.to_ask() == [str(first)]
    # Seen once: a later poll holding it again does not move it.
    watch.answered([str(second), str(first)], started=10.07, ended=10.08)
    assert watch.seen == {second: 10.05, first: 10.08}
    assert not watch.pending
    assert watch.polls == 3


def test_a_poll_window_runs_from_the_start_of_the_poll_before() -> None:
    event = uuid.uuid4()
    watch = Watch()
    watch.nothing_pending(5.0)
    watch.sent(event)
    watch.answered([], started=5.02, ended=5.03)
    watch.answered([str(event)], started=5.05, ended=5.06)
    # Committed after 5.02 (the poll that started then did not hold it), seen at 5.06.
    assert watch.windows == pytest.approx([0.04])


def test_the_oldest_pending_events_are_asked_first_and_at_most_the_limit() -> None:
    ids = [uuid.uuid4() for _ in range(5)]
    watch = Watch()
    for event_id in ids:
        watch.sent(event_id)
    watch.answered([str(ids[0])], started=1.0, ended=1.1)
    assert watch.to_ask(limit=2) == [str(i) for i in ids[1:3]]


def test_the_steady_rate_is_half_the_first_peak_in_every_repetition() -> None:
    rate = SteadyRate()
    assert rate.fix(800.0) == 400.0
    assert rate.fix(1200.0) == 400.0
    assert rate.per_s == 400.0


def test_a_tiny_peak_still_offers_a_load() -> None:
    assert SteadyRate().fix(4.0) == 5.0


def test_a_given_steady_rate_is_offered_whatever_the_peak() -> None:
    rate = SteadyRate.of(1300.0)
    assert rate.fix(800.0) == 1300.0
    assert rate.fix(5000.0) == 1300.0
    assert "--steady-rate" in rate.rule
    assert SteadyRate.of(None).rule == HALF_PEAK_RULE


def test_a_steady_rate_of_zero_is_refused() -> None:
    with pytest.raises(ValueError, match="above 0"):
        SteadyRate.of(0.0)


def test_the_benchmark_takes_a_steady_rate_and_defaults_to_half_the_peak() -> None:
    assert arguments().parse_args(["--steady-rate", "1300"]).steady_rate == 1300.0
    assert arguments().parse_args([]).steady_rate is None


def test_the_table_names_a_given_steady_rate_as_such() -> None:
    from bench.run import summarise

    runs = [{"e2e_offered": 1300.0}]
    fixed = summarise(runs, PROFILES["standard"], SteadyRate.of(1300.0).rule)
    assert fixed["e2e_offered"]["title"] == "steady open-loop load: fixed by --steady-rate"
    half = summarise(runs, PROFILES["standard"])
    assert half["e2e_offered"]["title"] == (
        "steady open-loop load: half the first repetition's single-POST peak"
    )


def test_the_report_says_the_steady_rate_and_its_rule() -> None:
    result = bench_result({}, steady={"per_s": 412.4, "rule": "half the first repetition's peak"})
    assert "Steady load: 412 ev/s in every repetition (half the first" in render_markdown(result)


def test_the_report_says_the_consumers_drain_capacity_beside_the_steady_rate() -> None:
    from bench.run import MEASURES, RATIOS, summarise

    runs = [
        {"e2e_offered": 1000.0, "drain_capacity_followup": 800.0, "drain_capacity_audit": 4000.0},
        {"e2e_offered": 1000.0, "drain_capacity_followup": 1250.0, "drain_capacity_audit": 5000.0},
    ]
    measures = summarise(runs, PROFILES["standard"])
    text = render_markdown(
        bench_result(measures, steady={"per_s": 1000.0, "rule": "half the first"})
    )
    assert "Steady load: 1,000 ev/s in every repetition (half the first)." in text
    # above 1.0x: the load offers more than the worker drains even with intake idle
    assert "the followup worker 1,025 ev/s (the steady load is 1.02x of it)" in text
    assert "the audit consumer 4,500 ev/s (the steady load is 0.23x of it)" in text
    assert RATIOS["e2e_offered"] == ["drain_capacity_followup", "drain_capacity_audit"]
    keys = [key for key, _title, _unit in MEASURES]
    assert {"e2e_wal_flush_ms", "e2e_wal_flush_worst_ms"} <= set(keys)
    assert keys.index("drain_capacity_followup") > keys.index("e2e_offered")


def test_a_wal_flush_is_its_write_and_sync_time_per_sync() -> None:
    from bench.latency import WalFlushes, WalIo

    samples = [
        WalIo(0.0, writes=100, write_ms=10.0, syncs=100, sync_ms=100.0),
        WalIo(1.0, writes=300, write_ms=30.0, syncs=300, sync_ms=300.0),  # 1.1 ms per sync
        WalIo(2.0, writes=305, write_ms=40.0, syncs=305, sync_ms=400.0),  # 5 syncs: too few
        WalIo(3.0, writes=405, write_ms=50.0, syncs=405, sync_ms=700.0),  # 3.1 ms per sync
    ]
    flushes = WalFlushes.of(samples)
    assert flushes is not None
    assert flushes.syncs == 305
    assert flushes.per_sync_ms == pytest.approx(640.0 / 305)
    assert flushes.fsync_ms == pytest.approx(600.0 / 305)
    # the worst second among those with enough syncs: the 5-sync second's 22 ms is left out
    assert flushes.worst_per_sync_ms == pytest.approx(3.1)
    idle = [WalIo(0.0, 1, 1.0, 1, 1.0), WalIo(1.0, 1, 1.0, 1, 1.0)]
    assert WalFlushes.of(idle) is None
    # no second busy enough: the worst is the mean
    few = [WalIo(0.0, 0, 0.0, 0, 0.0), WalIo(1.0, 4, 4.0, 4, 8.0)]
    assert WalFlushes.of(few) == WalFlushes(4, 3.0, 2.0, 3.0)


def test_a_drain_rate_runs_from_the_consumer_s_first_commit_to_its_last() -> None:
    # 100 rows in the first commit 2 s after the resume (the rejoin, the first fetch), then
    # 400 more over the next 0.5 s: 800 ev/s, not 500 / 2.5 s
    commits = [12.0] * 100 + [12.0 + 0.5 * (i + 1) / 400 for i in range(400)]
    assert latency.drain_rate(list(reversed(commits)), resumed_at=10.0) == pytest.approx(800.0)
    # all in one commit: the backlog over the time since the resume
    assert latency.drain_rate([11.0] * 50, resumed_at=10.0) == pytest.approx(50.0)


def test_a_paused_component_is_stopped_until_the_body_ends_however_it_ends() -> None:
    import subprocess
    from pathlib import Path
    from typing import Any, cast

    from bench.stack import BenchStack

    def stopped(pid: int) -> bool:
        """Whether ``pid`` is stopped, once it has handled the signals sent to it (a signal is
        handled when the process is next scheduled: polled, at most 2 s)."""
        seen = []
        for _ in range(200):
            seen.append(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0])
            if len(seen) > 2 and seen[-1] == seen[-2] == seen[-3]:
                break
            time.sleep(0.01)
        return seen[-1] == "T"

    def fill_fails() -> None:
        assert stopped(child.pid)
        raise RuntimeError("the fill failed")

    child = subprocess.Popen(["sleep", "60"])
    try:
        stack = BenchStack(cast(Any, None), "", "", {}, {"audit-consumer": [child.pid]})
        assert not stopped(child.pid)
        with stack.paused("audit-consumer", "followup-worker"):
            assert stopped(child.pid)
        assert not stopped(child.pid)
        with pytest.raises(RuntimeError), stack.paused("audit-consumer"):
            fill_fails()
        assert not stopped(child.pid)
    finally:
        child.kill()
        child.wait()


def test_a_watcher_polls_at_most_a_tenth_of_its_time() -> None:
    """A cheap poll keeps the short pause; a costly one (many ids pending while a consumer
    is behind) is followed by a pause nine times its length, so the watcher cannot take
    the stack's CPU from the consumer it times."""
    assert latency.pause_after(0.0005) == latency.WATCH_INTERVAL_S
    assert latency.pause_after(0.006) == pytest.approx(0.054)
    poll = 0.01
    assert poll / (poll + latency.pause_after(poll)) == pytest.approx(latency.WATCH_DUTY)


def test_lag_figures_count_an_event_never_seen_at_the_give_up_time() -> None:
    seen_early, seen_late, never = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    sent = {seen_early: 1.0, seen_late: 1.0, never: 1.0}
    figures = latency.lag_figures(sent, {seen_early: 1.05, seen_late: 1.3}, gave_up=3.0)
    assert figures.missing == 1
    assert figures.p50_ms == pytest.approx(300)
    assert figures.max_ms == pytest.approx(2000)


def test_the_poll_window_is_taken_over_every_watcher() -> None:
    short, long = Watch(), Watch()
    short.windows.extend([0.02] * 99)
    long.windows.append(0.5)
    assert latency.poll_window_p99_ms(short) == pytest.approx(20)
    assert latency.poll_window_p99_ms(short, long) == pytest.approx(500)
    assert latency.poll_window_p99_ms(Watch()) == 0.0


class _Table:
    """A connection to a table whose rows commit when ``commit`` is called: answers a
    watcher's poll with the ids asked that are committed."""

    def __init__(self) -> None:
        self.committed: set[str] = set()
        self.polls = 0

    def commit(self, event_id: uuid.UUID) -> None:
        self.committed.add(str(event_id))

    async def fetch(self, sql: str, ids: str) -> list[tuple[str]]:
        assert sql == latency.watch_sql("fu_applied_events")
        self.polls += 1
        return [(i,) for i in ids.strip("{}").split(",") if i in self.committed]


async def test_watching_sees_each_event_sent_once_it_is_committed() -> None:
    table = _Table()
    first, second = uuid.uuid4(), uuid.uuid4()
    async with latency.watching((table, "fu_applied_events"), within_s=5) as (seen,):
        seen.sent(first)
        seen.sent(second)
        table.commit(first)
        await asyncio.sleep(0)  # the watcher's first poll, already due
        assert set(seen.seen) == {first}
        committed_at = time.time()
        table.commit(second)
    # Leaving waits for the event still pending, and it is seen after its commit.
    assert set(seen.seen) == {first, second}
    assert seen.seen[second] >= committed_at
    assert not seen.pending


async def test_watching_gives_up_within_its_bound() -> None:
    table = _Table()
    async with latency.watching((table, "fu_applied_events"), within_s=0.05) as (seen,):
        seen.sent(uuid.uuid4())
    assert seen.pending
    assert not seen.seen


async def _failing_load(table: _Table) -> None:
    async with latency.watching((table, "fu_applied_events")) as (seen,):
        seen.sent(uuid.uuid4())
        await asyncio.sleep(0.05)
        raise RuntimeError("the load failed")


async def test_a_failing_body_stops_the_watchers() -> None:
    table = _Table()
    with pytest.raises(RuntimeError, match="the load failed"):
        await _failing_load(table)
    polls = table.polls
    assert polls > 0
    await asyncio.sleep(0.1)
    assert table.polls == polls


def test_followup_steady_prints_the_lag_to_visibility_beside_the_rows() -> None:
    from bench.followup_steady import lag_text

    text = lag_text(
        latency.Lags(p50_ms=40, p99_ms=180, max_ms=200, missing=0),
        latency.Lags(p50_ms=30, p99_ms=90, max_ms=95, missing=0),
        window_p99_ms=25,
    )
    assert "lag to visibility p50 40 ms, p99 180 ms (poll window p99 25 ms)" in text
    assert "from the rows' applied_at p50 30 ms, p99 90 ms" in text


def test_the_clocks_agree_when_each_row_is_stamped_then_committed_then_seen() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    check = latency.ClockCheck.of(
        row={a: 1.00, b: 1.10}, commit={a: 1.02, b: 1.10}, seen={a: 1.05, b: 1.30}
    )
    assert check == latency.ClockCheck(0, 0, 0.0)
    check.require("fu_applied_events")


def test_a_row_committed_after_the_poller_saw_it_stops_the_benchmark() -> None:
    """The poller's sighting is an upper bound of the commit: were it not, one of the two
    clocks (PostgreSQL's, this process's) would be wrong, and so would the figures."""
    a = uuid.uuid4()
    check = latency.ClockCheck.of(row={a: 1.0}, commit={a: 1.2}, seen={a: 1.1})
    assert check.committed_after_seen == 1
    assert check.worst_ms == pytest.approx(100)
    with pytest.raises(AssertionError, match="1 rows committed after the poller saw them"):
        check.require("audit_ledger")


def test_a_row_stamped_after_its_commit_stops_the_benchmark() -> None:
    a, b = uuid.uuid4(), uuid.uuid4()
    check = latency.ClockCheck.of(row={a: 1.3, b: 1.0}, commit={a: 1.2, b: 1.1}, seen={})
    assert (check.committed_after_seen, check.stamped_after_commit) == (0, 1)
    with pytest.raises(AssertionError, match="1 stamped after their commit"):
        check.require("fu_applied_events")


async def test_watchers_can_poll_less_often() -> None:
    """With the commit times as the figures, the pollers only need to know when every event
    is applied: a longer pause takes less of the stack's CPU."""
    polls = {}
    for pause in (latency.WATCH_INTERVAL_S, 0.1):
        table = _Table()
        async with latency.watching((table, "fu_applied_events"), pause_s=pause) as (seen,):
            seen.sent(uuid.uuid4())
            await asyncio.sleep(0.3)
            table.commit(next(iter(uuid.UUID(i) for i in seen.pending)))
        assert not seen.pending
        polls[pause] = table.polls
    assert polls[0.1] <= 5 < polls[latency.WATCH_INTERVAL_S]


def test_the_steady_targets_are_judged_on_the_commits_and_the_pollers_shown_beside() -> None:
    from bench.run import MEASURES, TARGETS

    titles = {key: title for key, title, _unit in MEASURES}
    assert "committed" in titles["e2e_followup_p99"]
    assert "committed" in titles["e2e_audit_p99"]
    assert {"e2e_followup_p99", "e2e_audit_p99"} <= set(TARGETS)
    for seen in ("followup", "audit"):
        for p in ("p50", "p99"):
            assert "poller" in titles[f"e2e_{seen}_seen_{p}"]
            assert f"e2e_{seen}_seen_{p}" not in TARGETS
