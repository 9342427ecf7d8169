"""Properties: whatever a branch system sends, in whatever order and with whatever times, the
events ``decide`` accepts never form a history the rules forbid; replaying them rebuilds the
same state; folding any events (even refused ones) never fails.

The forbidden histories are checked by an independent oracle (:class:`LogOracle`) that reads the
accepted log as an auditor would, event by event, without the domain's state classes.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from intake_story import (
    RM,
    T0,
    Story,
    acknowledged,
    answered,
    approved,
    arrived,
    as_recorded,
    as_stream,
    assessed,
    attended,
    booked,
    cancelled,
    closed,
    complaint_closed,
    confirmed,
    confirmed_by_client,
    consent,
    data_accessed,
    disclosed,
    documents,
    erasure,
    guidance,
    handled,
    needs,
    next_steps,
    no_show,
    opened,
    personal_data,
    progress,
    qualified,
    received,
    recommended,
    registered,
    resolved,
    screened,
    sold,
    survey,
    terms,
    verified,
    withdrawal,
)

from branchline_intake.domain import (
    DEFAULT_POLICY,
    Accepted,
    ClientState,
    DomainEvent,
    IntakePolicy,
    RecordedDecider,
    decide,
    rebuild,
    rebuild_from_recorded,
)
from branchline_intake.domain.related import Related
from branchline_intake.domain.shelf import rebuild_shelf_product
from branchline_intake.domain.staff import rebuild_staff_member
from branchline_shared.events import catalogue as c
from branchline_shared.events.envelope import Actor, RecordedEvent

pytestmark = pytest.mark.unit

VISITS = ("V-1", "V-2")
BRANCHES = ("BR-1", "BR-2")
APPOINTMENTS = ("A-1", "A-2")
COMPLAINTS = ("K-1", "K-2")
PRODUCTS = ("P-1", "P-2")
CONSULTATIONS = ("Q-1", "Q-2")
BUNDLES = ("onboard", "personal", "sell", "visit", "complaint", "consultation", "appointment")
FAR_FUTURE = T0 + timedelta(days=5000)
RULE_ID = re.compile(r"^D-\d{2}[a-z]?$")
SHELF_RISK = {"P-1": c.ProductRisk.R2, "P-2": c.ProductRisk.R4}
"""The institution's rating of each product (D-13): the only risk a sale can carry."""


def _shelf_events() -> dict[str, list[DomainEvent]]:
    at = T0 - timedelta(days=30)
    streams: dict[str, list[DomainEvent]] = {}
    for n, (product, risk) in enumerate(SHELF_RISK.items(), start=1):
        event = DomainEvent.of(approved(risk), at, event_id=uuid.UUID(int=10_000 + n))
        streams[f"product-{product}"] = [event]
    streams[f"staff-{RM}"] = [
        DomainEvent.of(qualified(category), at, event_id=uuid.UUID(int=20_000 + n))
        for n, category in enumerate(c.ProductCategory)
    ]
    return streams


SHELF_EVENTS = _shelf_events()
RELATED = Related(
    products={p: rebuild_shelf_product(p, SHELF_EVENTS[f"product-{p}"]) for p in SHELF_RISK},
    staff={RM: rebuild_staff_member(RM, SHELF_EVENTS[f"staff-{RM}"])},
)
RELATED_HISTORIES = {
    stream: [
        RecordedEvent(
            event_id=e.event_id,
            type=e.type,
            occurred_at=e.occurred_at,
            recorded_at=e.occurred_at,
            source="intake",
            actor=Actor(id="admin-1", role="admin"),
            product_id=stream.removeprefix("product-") if stream.startswith("product-") else None,
            staff_id=stream.removeprefix("staff-") if stream.startswith("staff-") else None,
            stream_id=stream,
            stream_version=i + 1,
            data=e.data(),
        )
        for i, e in enumerate(events)
    ]
    for stream, events in SHELF_EVENTS.items()
}

# --- strategies ---------------------------------------------------------------------------------

moments = st.integers(min_value=-30, max_value=500).map(lambda d: T0 + timedelta(days=d))
purposes = st.lists(st.sampled_from(c.ConsentPurpose), min_size=1, max_size=3, unique=True)
levels = st.sampled_from(c.RiskTolerance)
risks = st.sampled_from(c.ProductRisk)
visit_ids = st.sampled_from(VISITS)
appointment_ids = st.sampled_from(APPOINTMENTS)
complaint_ids = st.sampled_from(COMPLAINTS)
product_ids = st.sampled_from(PRODUCTS)
consultation_ids = st.sampled_from(CONSULTATIONS)

single: st.SearchStrategy[c.EventPayload] = st.one_of(
    st.just(registered()),
    st.builds(lambda p, e: consent(*p, expires_at=e), purposes, st.none() | moments),
    st.builds(lambda p: withdrawal(*p), purposes),
    st.builds(personal_data, st.sampled_from(c.ConsentPurpose)),
    st.just(verified()),
    st.builds(assessed, levels, st.none() | moments),
    st.just(erasure()),
    st.just(data_accessed()),
    st.builds(arrived, visit_ids),
    st.builds(needs, st.sampled_from(c.VisitCategory), visit_ids),
    st.builds(guidance, visit_ids),
    st.builds(documents, st.booleans(), visit_ids),
    st.builds(handled, visit_ids),
    st.builds(next_steps, visit_ids),
    st.builds(closed, visit_ids),
    st.builds(survey, st.none() | visit_ids),
    st.builds(booked, appointment_ids),
    st.builds(confirmed, appointment_ids),
    st.builds(cancelled, appointment_ids),
    st.builds(attended, appointment_ids),
    st.builds(no_show, appointment_ids),
    st.builds(opened, consultation_ids),
    st.builds(answered, consultation_ids),
    st.builds(lambda q, at: answered(q, promised_by=at), consultation_ids, moments),
    st.builds(recommended, product_ids, risks),
    st.builds(
        lambda p, a, r: disclosed(p, acknowledged=a, risk=r),
        product_ids,
        st.booleans(),
        st.none() | risks,
    ),
    st.builds(terms, product_ids),
    st.builds(
        lambda p, a, r: sold(p, str(a), r),
        product_ids,
        st.integers(1, 4_000_000),
        st.none() | risks,
    ),
    st.builds(received, complaint_ids, st.sampled_from(c.ComplaintSeverity)),
    st.builds(acknowledged, complaint_ids),
    st.builds(progress, complaint_ids),
    st.builds(resolved, complaint_ids),
    st.builds(confirmed_by_client, complaint_ids, st.booleans()),
    st.builds(complaint_closed, complaint_ids),
)


@st.composite
def suitable_risks(draw: st.DrawFn, level: c.RiskTolerance) -> c.ProductRisk:
    """Mostly a risk within ``level``, sometimes above it."""
    ceiling = level.rank if draw(st.integers(0, 4)) else 5
    return c.ProductRisk(f"R{draw(st.integers(1, ceiling))}")


@st.composite
def perturbed(draw: st.DrawFn, run: list[c.EventPayload]) -> list[c.EventPayload]:
    """``run`` with, now and then, a step dropped, doubled, or two neighbours swapped: the
    near-misses that each guard exists for."""
    out: list[c.EventPayload] = []
    for payload in run:
        roll = draw(st.integers(0, 19))
        if roll < 2:
            continue
        out.append(payload)
        if roll == 2:
            out.append(payload)
    if len(out) > 1 and draw(st.integers(0, 4)) == 0:
        i = draw(st.integers(0, len(out) - 2))
        out[i], out[i + 1] = out[i + 1], out[i]
    return out


@st.composite
def bundles(draw: st.DrawFn) -> list[c.EventPayload]:
    """Short runs in a plausible order (perturbed), so deep paths are reached and each guard
    meets its near-misses."""
    return draw(perturbed(draw(runs())))


@st.composite
def runs(draw: st.DrawFn) -> list[c.EventPayload]:
    kind = draw(st.sampled_from(BUNDLES))
    if kind == "onboard":
        return [verified(), screened(), assessed(draw(levels))]
    if kind == "personal":
        purpose = draw(st.sampled_from(c.ConsentPurpose))
        return [consent(purpose), personal_data(purpose)]
    if kind == "sell":
        level = draw(levels)
        product = draw(product_ids)
        risk = SHELF_RISK[product]
        if draw(st.integers(0, 4)):  # mostly suitable, sometimes above the tolerance
            level = c.RiskTolerance(f"C{max(level.rank, risk.rank)}")
        return [
            assessed(level),
            recommended(product, risk),
            disclosed(product, risk=risk),
            terms(product),
            sold(product),
        ]
    if kind == "visit":
        visit = draw(visit_ids)
        category = draw(st.sampled_from(c.VisitCategory))
        return [
            arrived(visit),
            needs(category, visit),
            guidance(visit),
            documents(True, visit),
            handled(visit),
            next_steps(visit),
            closed(visit),
            survey(visit),
        ]
    if kind == "consultation":
        consultation = draw(consultation_ids)
        promise = [answered(consultation, promised_by=FAR_FUTURE)] if draw(st.booleans()) else []
        return [opened(consultation), *promise, answered(consultation)]
    if kind == "complaint":
        complaint = draw(complaint_ids)
        return [
            received(complaint),
            acknowledged(complaint),
            progress(complaint),
            resolved(complaint),
            confirmed_by_client(complaint, draw(st.booleans())),
            complaint_closed(complaint),
        ]
    appointment = draw(appointment_ids)
    ending = draw(st.sampled_from([attended, no_show, cancelled]))
    return [booked(appointment), confirmed(appointment), ending(appointment)]


gaps_between = st.one_of(st.integers(-180, 24 * 60), st.integers(20 * 1440, 200 * 1440))
"""Minutes between runs: mostly forward, sometimes back (late events), sometimes months."""
gaps_within = st.integers(-5, 30)
"""Minutes between the events of one run."""


@st.composite
def submissions(draw: st.DrawFn) -> list[DomainEvent]:
    """A random client story: mostly a registration first, then singles and bundles."""
    chunks: list[list[c.EventPayload]] = []
    if draw(st.integers(0, 9)) > 0:
        chunks.append([registered()])
        if draw(st.booleans()):
            chunks.append(
                [verified(), screened(), assessed(draw(levels)), consent(c.ConsentPurpose.SERVICE)]
            )
    for _ in range(draw(st.integers(0, 16))):
        chunks.append(draw(bundles()) if draw(st.booleans()) else [draw(single)])
    events: list[DomainEvent] = []
    now = T0
    for chunk in chunks:
        now += timedelta(minutes=draw(gaps_between))
        for payload in chunk:
            now += timedelta(minutes=draw(gaps_within))
            branch = draw(st.sampled_from(BRANCHES))
            event_id = uuid.UUID(int=len(events) + 1)
            events.append(
                DomainEvent.of(payload, now, event_id=event_id, branch_id=branch, actor_id=RM)
            )
    return events


policies = st.builds(IntakePolicy, assessment_validity_months=st.sampled_from([1, 12]))

# --- the oracle ---------------------------------------------------------------------------------

_APPOINTMENT_PATHS = re.compile(r"^booked( confirmed( attended| no_show| cancelled)?| cancelled)?$")


@dataclass
class LogOracle:
    """Reads an accepted log in order and fails on the first event the standard forbids."""

    policy: IntakePolicy
    seen: dict[uuid.UUID, DomainEvent] = field(default_factory=dict)
    registered: bool = False
    erased: bool = False
    identity_times: list[datetime] = field(default_factory=list)
    assessments: list[DomainEvent] = field(default_factory=list)
    grants: dict[c.ConsentPurpose, list[tuple[datetime, datetime | None]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    visit_branch: dict[str, str | None] = field(default_factory=dict)
    visit_closed: set[str] = field(default_factory=set)
    visit_need: dict[str, c.VisitCategory] = field(default_factory=dict)
    visit_documents: dict[str, bool] = field(default_factory=dict)
    product_risk: dict[str, int] = field(default_factory=dict)
    fresh_disclosures: dict[str, set[uuid.UUID]] = field(default_factory=lambda: defaultdict(set))
    fresh_terms: dict[str, set[uuid.UUID]] = field(default_factory=lambda: defaultdict(set))
    complaint_steps: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    appointment_steps: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    consultation_done: dict[str, bool] = field(default_factory=dict)
    satisfied: dict[str, bool] = field(default_factory=dict)

    def read(self, ev: DomainEvent) -> None:
        p = ev.payload
        if isinstance(p, c.RuleViolationRefused):
            return
        if isinstance(p, c.ClientRegistered):
            assert not self.registered, "D-09: registered twice"
            self.registered = True
        else:
            assert self.registered, f"D-09: {ev.type} before client.registered"
            self._check(ev)
        self.seen[ev.event_id] = ev

    def _check(self, ev: DomainEvent) -> None:
        p, t = ev.payload, ev.occurred_at
        if isinstance(p, c.ClientConsentGranted):
            for purpose in p.purposes:
                self.grants[purpose].append((t, p.expires_at))
        elif isinstance(p, c.ClientConsentWithdrawn):
            for purpose in p.purposes:
                self.grants[purpose].clear()
        elif isinstance(p, c.ClientPersonalDataRecorded):
            assert not self.erased, "D-04: personal data after erasure request"
            assert any(g <= t and (e is None or t < e) for g, e in self.grants[p.purpose]), "D-04"
        elif isinstance(p, c.ClientPersonalDataAccessed):
            assert not self.erased, "D-04: personal data shown after erasure request"
        elif isinstance(p, c.ClientErasureRequested):
            self.erased = True
        elif isinstance(p, c.ClientIdentityVerified):
            self.identity_times.append(t)
        elif isinstance(p, c.ClientRiskAssessed):
            assert p.valid_until is not None, "D-05: validity written in"
            assert p.valid_until > t, "D-05: valid after it is made"
            self.assessments.append(ev)
        elif isinstance(p, c.VisitEvent):
            self._visit(ev, p)
        elif isinstance(p, c.FeedbackSurveyAnswered):
            assert p.visit_id is None or p.visit_id in self.visit_branch, (
                "D-01: survey of unknown visit"
            )
        elif isinstance(p, c.AppointmentEvent):
            steps = self.appointment_steps[p.appointment_id]
            steps.append(ev.type.removeprefix("appointment."))
            assert _APPOINTMENT_PATHS.match(" ".join(steps)), f"D-02: {steps}"
        elif isinstance(p, c.ConsultationEvent):
            self._consultation(p)
        elif isinstance(p, c.ComplaintEvent):
            self._complaint(ev, p)
        elif isinstance(p, c.ProductRecommended):
            self._suitable(t, p.product_risk)
            self._raise_risk(p.product_id, p.product_risk)
        elif isinstance(p, c.ProductRiskDisclosed):
            self.fresh_disclosures[p.product_id].add(ev.event_id)
            self._raise_risk(p.product_id, p.product_risk)
        elif isinstance(p, c.ProductTermsConfirmed):
            self.fresh_terms[p.product_id].add(ev.event_id)
        elif isinstance(p, c.ProductSold):
            self._sale(ev, p)

    def _visit(self, ev: DomainEvent, p: c.VisitEvent) -> None:
        visit = p.visit_id
        if isinstance(p, c.VisitArrived):
            assert visit not in self.visit_branch, "D-01: visit arrived twice"
            open_here = [
                v
                for v, b in self.visit_branch.items()
                if b == ev.branch_id and v not in self.visit_closed
            ]
            assert not open_here, "D-01: two open visits at one branch"
            self.visit_branch[visit] = ev.branch_id
            return
        assert visit in self.visit_branch, "D-01: step of a visit that never arrived"
        assert visit not in self.visit_closed, "D-01: step after the visit closed"
        if isinstance(p, c.VisitNeedsConfirmed):
            if self.visit_need.get(visit, p.category) is not p.category:
                self.visit_documents[visit] = False
            self.visit_need[visit] = p.category
        elif isinstance(p, c.VisitDocumentsChecked):
            self.visit_documents[visit] = p.complete
        elif isinstance(p, c.VisitBusinessHandled):
            need = self.visit_need.get(visit)
            assert need is not None, "D-01a: business before needs"
            if need in self.policy.documents_required_categories:
                assert self.visit_documents.get(visit), "D-01a: business before documents"
            if need in self.policy.identity_required_categories:
                assert any(at <= ev.occurred_at for at in self.identity_times), "D-03"
        elif isinstance(p, c.VisitClosed):
            self.visit_closed.add(visit)

    def _consultation(self, p: c.ConsultationEvent) -> None:
        done = self.consultation_done.get(p.consultation_id)
        if isinstance(p, c.ConsultationOpened):
            assert done is None, "D-06: opened twice"
            self.consultation_done[p.consultation_id] = False
            return
        assert done is False, "D-06: answer of unknown or answered consultation"
        assert isinstance(p, c.ConsultationAnswered)
        self.consultation_done[p.consultation_id] = p.answer is not None

    def _complaint(self, ev: DomainEvent, p: c.ComplaintEvent) -> None:
        steps = self.complaint_steps[p.complaint_id]
        step = ev.type.removeprefix("complaint.")
        previous = steps[-1] if steps else None
        if step == "received":
            assert previous is None, "D-07: received twice"
        else:
            assert previous is not None, "D-07: step of unknown complaint"
            assert previous != "closed", "D-07: step after closed"
        if step == "acknowledged":
            assert previous == "received", "D-07: acknowledged out of order"
        if step == "confirmed_by_client":
            assert previous == "resolved", "D-07: confirmed without resolution"
        if step == "closed":
            assert previous == "confirmed_by_client", "D-07: closed without confirmation"
            assert "resolved" in steps, "D-07: closed without resolution"
        if step in ("progress_reported", "resolved"):
            assert previous in ("acknowledged", "progress_reported", "confirmed_by_client")
            if previous == "confirmed_by_client":
                assert not self.satisfied[p.complaint_id], "D-07: rework after satisfied client"
        if isinstance(p, c.ComplaintConfirmedByClient):
            self.satisfied[p.complaint_id] = p.satisfied
        steps.append(step)

    def _assessment_at(self, t: datetime) -> DomainEvent | None:
        made = [a for a in self.assessments if a.occurred_at <= t]
        return max(made, key=lambda a: a.occurred_at) if made else None

    def _suitable(self, t: datetime, risk: c.ProductRisk) -> DomainEvent:
        assessment = self._assessment_at(t)
        assert assessment is not None, "D-05: no assessment"
        p = assessment.payload
        assert isinstance(p, c.ClientRiskAssessed)
        assert p.valid_until is not None
        assert assessment.occurred_at <= t < p.valid_until, "D-05: assessment not valid"
        assert risk.rank <= p.level.rank, "D-05: R above C"
        return assessment

    def _raise_risk(self, product: str, risk: c.ProductRisk | None) -> None:
        if risk is not None:
            self.product_risk[product] = max(self.product_risk.get(product, 0), risk.rank)

    def _sale(self, ev: DomainEvent, p: c.ProductSold) -> None:
        t = ev.occurred_at
        assert p.product_risk is not None, "D-05: sale without a risk level"
        assert p.product_risk is SHELF_RISK[p.product_id], "D-13: not the shelf's rating"
        assert p.product_risk.rank >= self.product_risk.get(p.product_id, 0), "D-05: understated"
        identity = self.seen[p.relied_on_identity_event_id]  # type: ignore[index]
        assert isinstance(identity.payload, c.ClientIdentityVerified)
        assert identity.occurred_at <= t
        assessment = self._suitable(t, p.product_risk)
        assert p.relied_on_assessment_event_id == assessment.event_id, "D-05: proof"
        disclosure = self.seen[p.relied_on_disclosure_event_id]  # type: ignore[index]
        d = disclosure.payload
        assert isinstance(d, c.ProductRiskDisclosed)
        assert d.product_id == p.product_id
        assert d.acknowledged, "D-05: disclosure not acknowledged"
        assert disclosure.occurred_at <= t, "D-05: disclosure after the sale"
        assert disclosure.event_id in self.fresh_disclosures[p.product_id], "D-05: reused"
        confirmation = self.seen[p.relied_on_terms_event_id]  # type: ignore[index]
        tc = confirmation.payload
        assert isinstance(tc, c.ProductTermsConfirmed)
        assert tc.product_id == p.product_id
        assert confirmation.occurred_at <= t, "D-05: terms after the sale"
        assert confirmation.event_id in self.fresh_terms[p.product_id], "D-05: reused"
        self.fresh_disclosures[p.product_id].clear()
        self.fresh_terms[p.product_id].clear()
        self._raise_risk(p.product_id, p.product_risk)


# --- properties ---------------------------------------------------------------------------------


def _run(
    candidates: list[DomainEvent], policy: IntakePolicy
) -> tuple[ClientState, list[DomainEvent]]:
    state, log = ClientState(), []
    for candidate in candidates:
        decision = decide(state, candidate, policy, RELATED)
        if isinstance(decision, Accepted):
            state = state.apply(decision.event)
            log.append(decision.event)
        else:
            assert RULE_ID.match(decision.violation.rule), decision.violation
    return state, log


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(candidates=submissions(), policy=policies)
def test_accepted_histories_never_break_a_rule(
    candidates: list[DomainEvent], policy: IntakePolicy
) -> None:
    _, log = _run(candidates, policy)
    for accepted_type in {e.type for e in log}:
        event(f"accepted {accepted_type}")

    oracle = LogOracle(policy)
    for accepted_event in log:
        oracle.read(accepted_event)


@SETTINGS
@given(candidates=submissions(), policy=policies)
def test_replaying_accepted_events_rebuilds_the_same_state(
    candidates: list[DomainEvent], policy: IntakePolicy
) -> None:
    state, log = _run(candidates, policy)

    assert rebuild(log) == state
    assert rebuild_from_recorded(_through_the_wire(log)) == state


@SETTINGS
@given(candidates=submissions())
def test_folding_any_events_never_fails(candidates: list[DomainEvent]) -> None:
    state = rebuild(candidates)

    assert state.version == len(candidates)


@SETTINGS
@given(candidates=submissions())
def test_deciding_again_on_the_same_state_gives_the_same_answer(
    candidates: list[DomainEvent],
) -> None:
    state, _ = _run(candidates[:-1], DEFAULT_POLICY)

    for candidate in candidates[-1:]:
        assert decide(state, candidate, related=RELATED) == decide(
            state, candidate, related=RELATED
        )


def _through_the_wire(log: list[DomainEvent]) -> list[RecordedEvent]:
    """The accepted events as stored: JSON out, JSON back in."""
    return [RecordedEvent.model_validate_json(r.model_dump_json()) for r in as_stream(log)]


@SETTINGS
@given(candidates=submissions(), policy=policies)
def test_write_path_decider_agrees_with_decide(
    candidates: list[DomainEvent], policy: IntakePolicy
) -> None:
    """The seam the application calls (stored history in, envelope or violation out) gives
    the same answers as ``decide`` over the state, batch after batch."""
    decider = RecordedDecider(policy, max_streams=2)
    history: list[RecordedEvent] = []
    state = ClientState()
    for candidate in candidates:
        envelope = as_recorded(candidate, 0)
        # the write path knows when it received the event (as_recorded: when it occurred)
        received = dataclasses.replace(candidate, received_at=envelope.recorded_at)
        expected = decide(state, received, policy, RELATED)
        answer = decider(history, envelope, RELATED_HISTORIES)
        if isinstance(expected, Accepted):
            assert isinstance(answer, RecordedEvent)
            assert answer.data == expected.event.data()
            state = state.apply(expected.event)
            history.append(answer.model_copy(update={"stream_version": len(history) + 1}))
        else:
            assert answer == expected.violation


@SETTINGS
@given(candidates=submissions(), policy=policies)
def test_a_handed_payload_decides_as_the_payload_parsed_again(
    candidates: list[DomainEvent], policy: IntakePolicy
) -> None:
    """#12: the write path hands the decider the payload the catalogue validated at the edge
    instead of letting it parse ``data`` (that payload's dump) a second time. The payload is
    what parsing the dump gives, and every answer (envelope or violation) is the same."""
    parsing = RecordedDecider(policy, max_streams=2)
    handed = RecordedDecider(policy, max_streams=2)
    history: list[RecordedEvent] = []
    for candidate in candidates:
        envelope = as_recorded(candidate, 0)
        validated = c.parse_payload(envelope.type, envelope.data)  # as submit does at the edge
        dumped = validated.model_dump(mode="json", exclude_none=True)
        assert c.parse_payload(envelope.type, dumped) == validated
        expected = parsing(history, envelope, RELATED_HISTORIES)
        answer = handed(history, envelope, RELATED_HISTORIES, payload=validated)
        assert answer == expected
        if isinstance(answer, RecordedEvent):
            history.append(answer.model_copy(update={"stream_version": len(history) + 1}))


def test_a_handed_payload_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """The candidate's payload, handed on, is not validated a second time (an empty history:
    nothing else to parse)."""
    from branchline_intake.domain import events as domain_events

    envelope = as_recorded(Story().given(registered()).history[0], 0)
    validated = c.parse_payload(envelope.type, envelope.data)
    calls: list[str] = []
    real = domain_events.parse_payload

    def counting(event_type: str, data: Any, *, stored: bool = False) -> c.EventPayload:
        calls.append(event_type)
        return real(event_type, data, stored=stored)

    monkeypatch.setattr(domain_events, "parse_payload", counting)
    assert isinstance(RecordedDecider()([], envelope, payload=validated), RecordedEvent)
    assert calls == []
    assert isinstance(RecordedDecider()([], envelope), RecordedEvent)
    assert calls == [envelope.type]  # without it, the data is parsed again


def test_bundled_sale_reaches_acceptance() -> None:
    """The generators can reach the deepest path: a deterministic check of one such story."""
    candidates = [registered(), verified(), screened(), assessed(c.RiskTolerance.C5)]
    candidates += [
        recommended("P-1", SHELF_RISK["P-1"]),
        disclosed("P-1"),
        terms("P-1"),
        sold("P-1"),
    ]
    events = [
        DomainEvent.of(p, T0 + timedelta(minutes=i), event_id=uuid.UUID(int=i + 1), actor_id=RM)
        for i, p in enumerate(candidates)
    ]

    _, log = _run(events, DEFAULT_POLICY)

    assert [e.type for e in log][-1] == "product.sold"
    sale = log[-1].payload
    assert isinstance(sale, c.ProductSold)
    assert sale.amount == Decimal(100000)
    oracle = LogOracle(DEFAULT_POLICY)
    for accepted_event in log:
        oracle.read(accepted_event)
