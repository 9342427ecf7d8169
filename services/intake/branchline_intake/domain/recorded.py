"""The write path's seam over stored envelopes: ``(history, candidate) -> event | violation``.

The intake application decides on :class:`RecordedEvent` s (its ``Decider`` protocol). This
module adapts :func:`~.decision.decide` to that shape: the candidate comes back unchanged when
accepted as is, with its ``data`` completed when the domain filled something in (a sale's
as-of proof, an assessment's validity), or a :class:`~.violations.RuleViolation`.

:class:`RecordedDecider` keeps the last state of each stream it saw, so deciding a batch of
``n`` events of one client applies each event once instead of rebuilding ``n`` times. It
relies on streams being append-only: a history that extends the remembered one (same length
prefix, same last event id) is folded on from the remembered state; any other is rebuilt.
A :class:`HistoryTail` carries only the events after a remembered state, so a writer that
reads just those decides in O(1) of the client's history.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence

from branchline_intake.domain.decision import (
    Decision,
    Refused,
    decide,
    decide_shelf_event,
    decide_staff_event,
)
from branchline_intake.domain.events import DomainEvent
from branchline_intake.domain.policy import DEFAULT_POLICY, IntakePolicy
from branchline_intake.domain.related import (
    NOTHING_RELATED,
    Related,
    referenced_stream_ids,
    referenced_streams,
    related_from,
)
from branchline_intake.domain.shelf import rebuild_shelf_product
from branchline_intake.domain.staff import rebuild_staff_member
from branchline_intake.domain.state import NO_EVENTS, ClientState, rebuild_from_recorded
from branchline_intake.domain.violations import RuleViolation
from branchline_shared.events.catalogue import EventPayload
from branchline_shared.events.envelope import RecordedEvent, Subject, SubmittedEvent

_NO_HISTORIES: Mapping[str, Sequence[RecordedEvent]] = {}


def decide_recorded(
    history: Sequence[RecordedEvent],
    candidate: RecordedEvent,
    policy: IntakePolicy = DEFAULT_POLICY,
    related: Mapping[str, Sequence[RecordedEvent]] = _NO_HISTORIES,
) -> RecordedEvent | RuleViolation:
    """Decide ``candidate`` after its subject's stored ``history`` (rebuilt each call);
    ``related``: the histories of the streams it refers to (:func:`references`)."""
    if candidate.subject is not Subject.CLIENT:
        return decide_subject_recorded(history, candidate, policy)
    proposed = DomainEvent.from_recorded(candidate, stored=False)
    return _answer(
        candidate,
        proposed,
        decide(rebuild_from_recorded(history), proposed, policy, _related(proposed, related)),
    )


def references(candidate: RecordedEvent | SubmittedEvent) -> tuple[str, ...]:
    """The streams besides its own whose history deciding ``candidate`` reads: a product
    event's shelf entry and its actor's staff records (D-13, D-14, D-16)."""
    if candidate.subject is not Subject.CLIENT:
        return ()
    return referenced_stream_ids(candidate.type, candidate.data, candidate.actor.id)


def decide_subject_recorded(
    history: Sequence[RecordedEvent],
    candidate: RecordedEvent,
    policy: IntakePolicy,
    payload: EventPayload | None = None,
) -> RecordedEvent | RuleViolation:
    """Decide an event of the product shelf or of a member of staff after its history."""
    proposed = DomainEvent.from_recorded(candidate, stored=False, payload=payload)
    past = [DomainEvent.from_recorded(e) for e in history]
    if candidate.subject is Subject.PRODUCT:
        product = rebuild_shelf_product(candidate.subject_id, past)
        return _answer(candidate, proposed, decide_shelf_event(product, proposed, policy))
    member = rebuild_staff_member(candidate.subject_id, past)
    return _answer(candidate, proposed, decide_staff_event(member, proposed, policy))


def decide_on_state(
    state: ClientState,
    candidate: RecordedEvent,
    policy: IntakePolicy = DEFAULT_POLICY,
    related: Mapping[str, Sequence[RecordedEvent]] = _NO_HISTORIES,
    payload: EventPayload | None = None,
) -> RecordedEvent | RuleViolation:
    """Decide ``candidate`` after a client state; the envelope to append, or the violation.
    ``payload``: the candidate's payload already validated by the catalogue, if at hand."""
    # clear: decided, then sealed
    proposed = DomainEvent.from_recorded(candidate, stored=False, payload=payload)
    return _answer(
        candidate, proposed, decide(state, proposed, policy, _related(proposed, related))
    )


def _related(proposed: DomainEvent, histories: Mapping[str, Sequence[RecordedEvent]]) -> Related:
    wanted = referenced_streams(proposed)
    if not wanted:
        return NOTHING_RELATED
    folded = {
        stream: [DomainEvent.from_recorded(e) for e in histories.get(stream, ())]
        for stream in wanted
    }
    return related_from(proposed, folded)


def _answer(
    candidate: RecordedEvent, proposed: DomainEvent, decision: Decision
) -> RecordedEvent | RuleViolation:
    if isinstance(decision, Refused):
        return decision.violation
    if decision.event is proposed:
        return candidate
    return candidate.model_copy(update={"data": decision.event.data()})


class HistoryTail(list[RecordedEvent]):
    """The end of a stream's history, from the last event a remembered state covers.

    Reading a client's whole history for every write costs O(events); a writer that holds
    the state after event ``base_count`` only needs the events from there on. The first
    event of the tail is that last covered event (its id proves the state still fits the
    stream); the rest are folded on."""

    def __init__(self, base: tuple[int, uuid.UUID, ClientState], tail: list[RecordedEvent]):
        super().__init__(tail)
        self.base_count, self.base_last_id, self.base_state = base


class _Unfolded:
    """A remembered state not folded yet: the state before ``event`` and the event. Folding
    costs about 12 µs per event (its payload made a domain event, then applied); a batch of
    new clients decides each once and most are never written again while remembered, so the
    fold waits until a next decision or write needs it (#12)."""

    __slots__ = ("before", "event")

    def __init__(self, before: ClientState, event: RecordedEvent) -> None:
        self.before = before
        self.event = event

    def fold(self) -> ClientState:
        return self.before.apply(DomainEvent.from_recorded(self.event))


Recalled = list[
    tuple[
        str,
        tuple[int, uuid.UUID, ClientState | _Unfolded] | None,
        RecordedEvent | None,
        tuple[uuid.UUID, ...],
    ]
]
"""What a decider remembered of some streams (``RecordedDecider.recall``), opaque to others."""


RECENT_IDS = 8
"""How many of a remembered stream's latest event ids a decider keeps (``remembers_id``,
Round 27, #12): at most 8 ids per remembered stream (1,024 streams: 8,192 UUIDs, well under a
megabyte)."""


class RecordedDecider:
    """A ``Decider`` for the write path that remembers the state of recent streams."""

    def __init__(self, policy: IntakePolicy = DEFAULT_POLICY, max_streams: int = 1024) -> None:
        if max_streams < 1:
            raise ValueError("max_streams must be at least 1")
        self.policy = policy
        self._max_streams = max_streams
        self._states: OrderedDict[str, tuple[int, uuid.UUID, ClientState | _Unfolded]] = (
            OrderedDict()
        )
        # Each remembered stream's last event itself (the one its remembered id names): a
        # history that holds nothing after it (``remembered_tail``) starts with it (#12).
        self._lasts: dict[str, RecordedEvent] = {}
        # Each remembered stream's latest event ids seen or decided, at most RECENT_IDS
        # (Round 27, #12): a request resending one of them is kept out of a guessed group.
        self._recent: dict[str, tuple[uuid.UUID, ...]] = {}

    def __call__(
        self,
        history: Sequence[RecordedEvent],
        candidate: RecordedEvent,
        related: Mapping[str, Sequence[RecordedEvent]] = _NO_HISTORIES,
        *,
        payload: EventPayload | None = None,
    ) -> RecordedEvent | RuleViolation:
        """``payload``: the candidate's payload as the catalogue validated it at the edge
        (``candidate.data`` is its dump); deciding then does not parse it again (#12)."""
        if candidate.subject is not Subject.CLIENT:
            return decide_subject_recorded(history, candidate, self.policy, payload)
        return decide_on_state(self.state_of(history), candidate, self.policy, related, payload)

    def references(self, candidate: RecordedEvent | SubmittedEvent) -> tuple[str, ...]:
        """See :func:`references`."""
        return references(candidate)

    def state_of(self, history: Sequence[RecordedEvent]) -> ClientState:
        """The state after ``history``, folding on from the remembered state when it can."""
        if not history:
            return NO_EVENTS
        stream_id = history[-1].stream_id
        if isinstance(history, HistoryTail):
            if not history or history[0].event_id != history.base_last_id:
                raise ValueError(f"the tail of {stream_id} does not start at its remembered state")
            offset = history.base_count - 1  # where the tail starts in the whole history
            state, start = history.base_state, 1
            # Within one batch the tail grows by the events just decided: fold on from the
            # latest state remembered inside it, not from the tail's base each time.
            known = self._known(stream_id)
            if known is not None:
                at = known[0] - 1 - offset
                if start <= at < len(history) and history[at].event_id == known[1]:
                    state, start = known[2], at + 1
            count = offset + len(history)
        else:
            state, start = self._remembered(stream_id, history)
            count = len(history)
        for recorded in history[start:]:
            state = state.apply(DomainEvent.from_recorded(recorded))
        self._remember(stream_id, count, history[-1], state, seen=history[-RECENT_IDS:])
        return state

    def remembered(self, stream_id: str) -> tuple[int, uuid.UUID, ClientState] | None:
        """(events covered, last event id, state) remembered for a stream, if any."""
        return self._known(stream_id)

    def remembers_id(self, stream_id: str, event_id: uuid.UUID) -> bool:
        """Whether ``event_id`` is one of the latest events (at most :data:`RECENT_IDS`) this
        decider saw or decided on a stream it remembers (Round 27, #12): a request sending
        it again is a resend, whether or not it was the stream's last. A decision that was
        never written may be among them (``restore`` forgets a failed guess's): such an id
        only sends its request the ordinary way, which looks it up in the store."""
        return event_id in self._recent.get(stream_id, ())

    def _known(self, stream_id: str) -> tuple[int, uuid.UUID, ClientState] | None:
        """What is remembered of a stream, its state folded now if it waited (``_Unfolded``)."""
        known = self._states.get(stream_id)
        if known is None:
            return None
        count, last_id, state = known
        if isinstance(state, _Unfolded):
            state = state.fold()
            self._states[stream_id] = (count, last_id, state)  # its place in the order kept
        return count, last_id, state

    def _remembered(
        self, stream_id: str, history: Sequence[RecordedEvent]
    ) -> tuple[ClientState, int]:
        known = self._states.get(stream_id)
        if known is not None:
            count, last_id, _ = known
            if len(history) >= count and history[count - 1].event_id == last_id:
                folded = self._known(stream_id)
                assert folded is not None
                return folded[2], count
        return NO_EVENTS, 0

    def remember_decided(self, history: Sequence[RecordedEvent]) -> None:
        """Remember a client's state after the event just decided and appended to
        ``history``, so that its next write can stand on it (``remembered_tail``, #12). Its
        state before that event was remembered when it was decided (``state_of``); the event
        is folded onto it only when a next decision or write needs it (``_Unfolded``)."""
        if not history or history[-1].subject is not Subject.CLIENT:
            return
        event = history[-1]
        stream_id = event.stream_id
        if isinstance(history, HistoryTail):
            count = history.base_count - 1 + len(history)
        else:
            count = len(history)
        if count == 1:
            before: ClientState | _Unfolded = NO_EVENTS
        else:
            known = self._states.get(stream_id)
            if known is None or known[0] != count - 1 or known[1] != history[-2].event_id:
                self.state_of(history)  # not what was decided on: folded the long way
                return
            before = known[2]
        if isinstance(before, _Unfolded):  # two events of one client in one decision
            before = before.fold()
        self._remember(stream_id, count, event, _Unfolded(before, event))

    def remembered_tail(self, stream_id: str) -> HistoryTail | None:
        """The stream's history as remembered, if nothing were written after it: a tail of
        its remembered last event alone (``state_of`` folds nothing of it), for a write whose
        statement checks that the stream still ends with that event (#12)."""
        last = self._lasts.get(stream_id)
        if last is None or stream_id not in self._states:
            return None
        known = self._known(stream_id)
        if known is None or last.event_id != known[1]:
            return None
        return HistoryTail(known, [last])

    def recall(self, stream_ids: Iterable[str]) -> Recalled:
        """What is remembered of these streams now, to be put back by :meth:`restore` (a
        guessed group that wrote nothing, guessed again without some of its callers: its
        decisions were remembered, and the guess again stands on what was remembered before
        them, Round 26, #12). Nothing is folded."""
        return [
            (s, self._states.get(s), self._lasts.get(s), self._recent.get(s, ()))
            for s in stream_ids
        ]

    def restore(self, recalled: Recalled) -> None:
        """Remember what :meth:`recall` gave, as it was then (a stream not remembered then is
        forgotten). A stream another decision remembered meanwhile is put back too: what is
        remembered is always checked against the store before a write stands on it."""
        for stream_id, known, last, recent in recalled:
            if known is None or last is None:
                self._forget(stream_id)
                continue
            self._states[stream_id] = known
            self._lasts[stream_id] = last
            self._recent[stream_id] = recent
            self._states.move_to_end(stream_id)
        self._bound()

    def _remember(
        self,
        stream_id: str,
        count: int,
        last: RecordedEvent,
        state: ClientState | _Unfolded,
        *,
        seen: Sequence[RecordedEvent] = (),
    ) -> None:
        self._states[stream_id] = (count, last.event_id, state)
        self._lasts[stream_id] = last
        recent = self._recent.get(stream_id, ())
        for event in (*seen, last):
            if event.event_id not in recent:
                recent = (*recent, event.event_id)
        self._recent[stream_id] = recent[-RECENT_IDS:]
        self._states.move_to_end(stream_id)
        self._bound()

    def _forget(self, stream_id: str) -> None:
        self._states.pop(stream_id, None)
        self._lasts.pop(stream_id, None)
        self._recent.pop(stream_id, None)

    def _bound(self) -> None:
        while len(self._states) > self._max_streams:
            gone, _ = self._states.popitem(last=False)
            self._lasts.pop(gone, None)
            self._recent.pop(gone, None)
