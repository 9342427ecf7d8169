"""Reconcile's comparison of a store's log with what a consumer applied (pure)."""

from __future__ import annotations

import uuid

import pytest

from branchline_shared.eventstore.ports import LogPosition
from branchline_shared.reconcile.compare import AppliedEvent, StoreEvent, compare

pytestmark = pytest.mark.unit


def stored(
    n: int, *, stream: str = "client-C-1", version: int | None = None, **kw: object
) -> StoreEvent:
    values: dict[str, object] = {
        "source": "intake",
        "event_id": uuid.UUID(int=n),
        "log_position": LogPosition(100 + n, n),
        "stream_id": stream,
        "stream_version": version if version is not None else n,
        "client_id": "C-1",
        "topic": "t",
        "in_flight": False,
    }
    values.update(kw)
    return StoreEvent(**values)  # type: ignore[arg-type]


def applied(n: int, seq: int | None = None) -> AppliedEvent:
    return AppliedEvent(uuid.UUID(int=n), seq if seq is not None else n, "intake", n)


def test_everything_applied_in_order_is_no_difference() -> None:
    report = compare(
        "c", {"intake": [stored(1), stored(2), stored(3)]}, [applied(1), applied(2), applied(3)]
    )
    assert report.differences == 0
    (progress,) = report.progress
    assert progress.contiguous_to == LogPosition(103, 3)
    assert progress.last_global_position == 3
    assert (progress.events, progress.applied) == (3, 3)


def test_missing_dead_lettered_and_in_flight_are_told_apart() -> None:
    events = [stored(1), stored(2), stored(3), stored(4, in_flight=True)]
    report = compare(
        "c",
        {"intake": events},
        [applied(1)],
        dead_lettered=frozenset({uuid.UUID(int=3)}),
    )
    assert [e.event_id.int for e in report.missing] == [2]
    assert [e.event_id.int for e in report.dead_lettered] == [3]
    assert report.in_flight == 1
    assert report.differences == 2
    assert report.progress[0].contiguous_to == LogPosition(101, 1)


def test_the_contiguous_prefix_stops_at_the_first_gap_in_log_order() -> None:
    # Log order is (transaction, position): position 5 committed in an earlier transaction.
    events = [
        stored(5, log_position=LogPosition(50, 5), version=1),
        stored(1, version=2),
        stored(2, version=3),
    ]
    report = compare("c", {"intake": events}, [applied(5, seq=1), applied(2, seq=2)])
    assert report.progress[0].contiguous_to == LogPosition(50, 5)
    assert [e.event_id.int for e in report.missing] == [1]


def test_applied_events_no_store_has_are_extra_except_the_consumers_own() -> None:
    own = AppliedEvent(uuid.UUID(int=99), 5, "audit", None)
    forged = AppliedEvent(uuid.UUID(int=77), 6, "intake", None)
    report = compare(
        "c", {"intake": [stored(1)]}, [applied(1), own, forged], own_sources=frozenset({"audit"})
    )
    assert report.extra == [uuid.UUID(int=77)]
    assert report.applied == 2


def test_an_event_applied_after_a_later_version_of_its_stream_is_out_of_order() -> None:
    events = [stored(1), stored(2), stored(3), stored(4, stream="client-C-2", version=1)]
    # version 2 re-published late: applied after version 3; another stream is not affected
    report = compare(
        "c", {"intake": events}, [applied(1, 1), applied(3, 2), applied(4, 3), applied(2, 4)]
    )
    assert report.out_of_order == [uuid.UUID(int=2)]
    assert report.missing == []


def kept(n: int, seq: int) -> AppliedEvent:
    """Applied and kept in the client's journal: re-projected in source order if late."""
    return AppliedEvent(uuid.UUID(int=n), seq, "intake", n, source_ordered=True)


def test_a_late_event_the_consumer_put_in_source_order_is_late_not_a_difference() -> None:
    # #12: the followup worker re-projected the client when version 2 arrived after 3
    events = [stored(1), stored(2), stored(3)]
    report = compare("c", {"intake": events}, [kept(1, 1), kept(3, 2), kept(2, 3)])
    assert report.out_of_order == []
    assert report.late == [uuid.UUID(int=2)]
    assert report.differences == 0


def test_a_late_event_not_put_in_order_stays_out_of_order() -> None:
    events = [stored(1), stored(2), stored(3), stored(4), stored(5)]
    report = compare(
        "c",
        {"intake": events},
        # 2: not kept (no client: nothing re-projects it); 4: kept, but version 5 applied
        # before it was not (applied before the journal): its arrival saw nothing later
        [kept(1, 1), kept(3, 2), applied(2, 3), applied(5, 4), kept(4, 5)],
    )
    assert report.out_of_order == [uuid.UUID(int=2), uuid.UUID(int=4)]
    assert report.late == []
    assert report.differences == 2


def test_a_consumer_whose_order_is_its_record_reports_late_events_as_information() -> None:
    # #12: the audit ledger appends in arrival order, hash-chained; the trail is complete
    events = [stored(1), stored(2), stored(3)]
    report = compare(
        "c", {"intake": events}, [applied(1, 1), applied(3, 2), applied(2, 3)], late_is_record=True
    )
    assert report.out_of_order == []
    assert report.late == [uuid.UUID(int=2)]
    assert report.differences == 0


def test_a_late_read_record_is_late_not_a_difference() -> None:
    # #12: intake's client.data_read events are on a reads stream of their own, published to
    # the events topic; the followup worker only marks them applied (never journalled), so a
    # re-queued read applied after a later one was out of order for ever; their order
    # changes nothing.
    read = {"stream": "reads-C-1", "type": "client.data_read"}
    events = [
        stored(1, version=1, **read),
        stored(2, version=2, **read),
        stored(3, version=3, **read),
    ]
    report = compare("c", {"intake": events}, [applied(1, 1), applied(3, 2), applied(2, 3)])
    assert report.out_of_order == []
    assert report.late == [uuid.UUID(int=2)]
    assert report.differences == 0


def test_several_stores_are_compared_separately() -> None:
    followup = stored(
        7, source="followup", log_position=LogPosition(1, 1), stream="followup-task-x", version=1
    )
    report = compare(
        "c",
        {"intake": [stored(1)], "followup": [followup]},
        [applied(1), AppliedEvent(uuid.UUID(int=7), 2, "followup", 1)],
    )
    assert report.differences == 0
    assert [(p.source, p.last_global_position) for p in report.progress] == [
        ("intake", 1),
        ("followup", 1),
    ]


def test_a_position_past_the_log_end_a_fetch_reported_means_the_log_was_lost() -> None:
    from branchline_shared.kafka.consuming import partitions_past_log_end

    positions = {"a": 5, "b": 3, "c": 7, "d": 2}
    highwaters: dict[str, int | None] = {"a": 0, "b": 3, "c": None, "d": 9}
    # b is at its end, c not fetched yet, d behind: only a lies past the end
    assert partitions_past_log_end(positions, highwaters) == ["a"]
