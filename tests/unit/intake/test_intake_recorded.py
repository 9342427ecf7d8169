"""The write path's seam: stored history and candidate envelope in; envelope or violation out."""

from __future__ import annotations

import pytest
from intake_story import (
    Story,
    as_recorded,
    as_stream,
    assessed,
    erasure,
    personal_data,
    recommended,
    registered,
    related_streams,
    sold,
)

from branchline_intake.domain import (
    RecordedDecider,
    RuleViolation,
    decide_recorded,
    rebuild,
    recorded,
)
from branchline_shared.events.catalogue import ProductRisk, RiskTolerance
from branchline_shared.events.envelope import RecordedEvent

pytestmark = pytest.mark.unit


def test_accepted_candidate_comes_back_unchanged() -> None:
    story = Story().given(registered(), assessed(RiskTolerance.C3))
    event = story.event(recommended(risk=ProductRisk.R1))
    story.related(event)  # the product on the shelf, the RM qualified
    candidate = as_recorded(event, 0)

    answer = decide_recorded(as_stream(story.history), candidate, related=related_streams(story))

    assert answer is candidate


def test_d05_sale_comes_back_with_its_proof_in_the_data() -> None:
    story = Story().onboarded().ready_to_sell()
    candidate = as_recorded(story.event(sold()), 0)

    answer = decide_recorded(as_stream(story.history), candidate, related=related_streams(story))

    assert isinstance(answer, RecordedEvent)
    assert answer.event_id == candidate.event_id
    assert answer.data["relied_on_assessment_event_id"] == str(story.history[3].event_id)
    assert answer.data["received_at"] == candidate.recorded_at.isoformat().replace("+00:00", "Z")
    assert answer.data["relied_on_terms_event_id"] == str(story.history[-1].event_id)
    assert answer.data["product_risk"] == "R3"
    assert "relied_on_assessment_event_id" not in candidate.data


def test_d05_assessment_comes_back_with_its_validity() -> None:
    story = Story().given(registered())
    candidate = as_recorded(story.event(assessed()), 0)

    answer = decide_recorded(as_stream(story.history), candidate)

    assert isinstance(answer, RecordedEvent)
    assert answer.data["valid_until"].startswith("2027-11-22")


def test_d04_refusal_comes_back_as_the_violation() -> None:
    story = Story().given(registered(), erasure())
    candidate = as_recorded(story.event(personal_data()), 0)

    answer = decide_recorded(as_stream(story.history), candidate)

    assert isinstance(answer, RuleViolation)
    assert answer.rule == "D-04"


def test_decider_folds_on_from_the_remembered_state() -> None:
    story = Story().onboarded()
    decider = RecordedDecider()
    first = as_stream(story.history)
    before = decider.state_of(first)
    story.ready_to_sell()

    after = decider.state_of(as_stream(story.history))

    assert decider.state_of(first) == before
    assert after == rebuild(story.history)


def test_decider_rebuilds_a_history_that_is_not_an_extension() -> None:
    decider = RecordedDecider()
    decider.state_of(as_stream(Story().onboarded().history))
    other = Story().given(registered(), erasure())

    assert decider.state_of(as_stream(other.history)) == other.state


def test_decider_forgets_the_least_recent_stream() -> None:
    decider = RecordedDecider(max_streams=1)
    one = as_stream(Story().given(registered()).history, client_id="C-1")
    two = as_stream(Story().given(registered()).history, client_id="C-2")

    decider.state_of(one)
    decider.state_of(two)

    assert list(decider._states) == ["client-C-2"]


def test_decider_of_empty_history_is_the_empty_state() -> None:
    assert RecordedDecider().state_of([]).version == 0


def test_decider_needs_room_for_one_stream() -> None:
    with pytest.raises(ValueError, match="max_streams"):
        RecordedDecider(max_streams=0)


def test_a_decided_event_is_remembered_then_folded_when_needed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the write path remembers after deciding each event (``remember_decided``) is the
    state a fold of the whole history gives; the fold itself waits until a next decision or
    write asks (a batch of new clients paid ~12 µs an event for folds nobody used, #12)."""
    from branchline_intake.domain import recorded

    story = Story().onboarded().ready_to_sell()
    stream = as_stream(story.history)
    decider = RecordedDecider()
    folds = 0
    real = recorded.DomainEvent.from_recorded

    def counted(event: RecordedEvent) -> object:
        nonlocal folds
        folds += 1
        return real(event)

    monkeypatch.setattr(recorded.DomainEvent, "from_recorded", staticmethod(counted))
    for n in range(1, len(stream) + 1):
        decider.state_of(stream[: n - 1])  # the decision's read of the state before it
        decider.remember_decided(stream[:n])
    assert folds == len(stream) - 1  # each event folded by the next decision, the last not yet
    remembered = decider.remembered("client-C-1")
    assert folds == len(stream)
    assert remembered is not None
    assert remembered[:2] == (len(stream), stream[-1].event_id)
    assert remembered[2] == rebuild(story.history)
    tail = decider.remembered_tail("client-C-1")
    assert tail is not None
    assert (tail.base_count, tail.base_state) == (len(stream), rebuild(story.history))
    assert decider.state_of(stream) == rebuild(story.history)
    assert folds == len(stream)  # nothing folded twice


def test_a_new_client_decided_in_a_batch_is_not_folded_until_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from branchline_intake.domain import recorded

    decider = RecordedDecider()
    streams = [as_stream(Story().given(registered()).history, client_id=f"C-{i}") for i in range(5)]
    calls: list[RecordedEvent] = []
    real = recorded.DomainEvent.from_recorded
    monkeypatch.setattr(
        recorded.DomainEvent,
        "from_recorded",
        staticmethod(lambda event: calls.append(event) or real(event)),
    )
    for stream in streams:
        assert decider.state_of([]).version == 0
        decider.remember_decided(stream)
    assert calls == []
    state = decider.remembered("client-C-3")
    assert state is not None
    assert state[2] == rebuild(Story().given(registered()).history)
    assert calls == [streams[3][0]]


def test_what_was_remembered_before_a_guess_is_put_back_after_it() -> None:
    """A guessed group that wrote nothing is guessed again on what the decider remembered
    before it (Round 26, #12): ``restore`` puts back each stream's remembered state and last
    event as ``recall`` took them, forgetting a stream remembered only since."""
    story = Story().onboarded().ready_to_sell()
    stream = as_stream(story.history)
    decider = RecordedDecider()
    decider.state_of(stream[:-1])
    before = decider.remembered_tail("client-C-1")
    assert before is not None
    recalled = decider.recall(["client-C-1", "client-C-2"])
    decider.remember_decided(stream)  # the guess's decision, never written
    other = as_stream(Story().given(registered()).history, client_id="C-2")
    decider.remember_decided(other)
    guessed = decider.remembered("client-C-1")
    assert guessed is not None
    assert guessed[:2] == (len(stream), stream[-1].event_id)
    assert decider.remembered("client-C-2") is not None
    decider.restore(recalled)
    after = decider.remembered_tail("client-C-1")
    assert after is not None
    assert (after.base_count, after.base_last_id) == (before.base_count, before.base_last_id)
    assert list(after) == list(before)
    assert decider.remembered("client-C-2") is None
    assert decider.remembered_tail("client-C-2") is None


def test_a_remembered_stream_keeps_its_latest_event_ids_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Round 27 (#12): the decider knows a resend of any of a remembered stream's latest
    events (at most ``RECENT_IDS``, 3 here), not only of its last; what a failed guess
    decided is forgotten with it (``restore``), and a stream forgotten for room takes its
    ids along."""
    monkeypatch.setattr(recorded, "RECENT_IDS", 3)
    story = Story().onboarded().ready_to_sell()
    stream = as_stream(story.history)
    assert len(stream) == 7
    decider = RecordedDecider(max_streams=2)
    decider.state_of(stream[:-1])
    earlier = stream[: len(stream) - 1][-recorded.RECENT_IDS :]
    assert all(decider.remembers_id("client-C-1", e.event_id) for e in earlier)
    older = stream[: max(0, len(stream) - 1 - recorded.RECENT_IDS)]
    assert not any(decider.remembers_id("client-C-1", e.event_id) for e in older)
    assert not decider.remembers_id("client-C-1", stream[-1].event_id)
    recalled = decider.recall(["client-C-1"])
    decider.remember_decided(stream)  # the guess's decision, never written
    assert decider.remembers_id("client-C-1", stream[-1].event_id)
    decider.restore(recalled)
    assert not decider.remembers_id("client-C-1", stream[-1].event_id)
    assert decider.remembers_id("client-C-1", stream[-2].event_id)
    decider.remember_decided(stream)
    for client in ("C-2", "C-3"):  # two more streams: C-1 forgotten for room
        decider.state_of(as_stream(Story().given(registered()).history, client_id=client))
    assert not any(decider.remembers_id("client-C-1", e.event_id) for e in stream)
    assert len(decider._recent) == 2
    assert all(len(ids) <= recorded.RECENT_IDS for ids in decider._recent.values())
