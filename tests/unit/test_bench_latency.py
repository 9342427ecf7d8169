"""The benchmark's steady load (#12): visibility seen from outside by a poller, and one rate
for every repetition of a run."""

from __future__ import annotations

import uuid

import pytest
from bench import latency
from bench.latency import Watch
from bench.run import SteadyRate, render_markdown

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


def test_the_report_says_the_steady_rate_and_its_rule() -> None:
    result = {
        "profile": "smoke",
        "repeat": 2,
        "machine": {
            "started_at": "t",
            "commit": "c",
            "cores": 2,
            "cpu": "x",
            "memory_gib": 4,
            "load_average_at_start": [1.0],
            "load_average_at_end": [1.0],
            "python": "3.11",
            "versions": {},
        },
        "measures": {},
        "steady_rate": {"per_s": 412.4, "rule": "half the first repetition's peak"},
    }
    assert "Steady load: 412 ev/s in every repetition (half the first" in render_markdown(result)


def test_a_watcher_polls_at_most_a_tenth_of_its_time() -> None:
    """A cheap poll keeps the short pause; a costly one (many ids pending while a consumer
    is behind) is followed by a pause nine times its length, so the watcher cannot take
    the stack's CPU from the consumer it times."""
    assert latency.pause_after(0.0005) == latency.WATCH_INTERVAL_S
    assert latency.pause_after(0.006) == pytest.approx(0.054)
    poll = 0.01
    assert poll / (poll + latency.pause_after(poll)) == pytest.approx(latency.WATCH_DUTY)
