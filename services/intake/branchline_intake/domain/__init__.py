"""The intake service's pure domain: the client's history and the rules of the standard.

On the write path's seam (``Decider``: stored history and candidate envelope in, the envelope
to append or the violation out)::

    decider = RecordedDecider(policy)                    # one per process; remembers states
    outcome = decider(history, candidate)                # RecordedEvent | RuleViolation

Or step by step::

    state = rebuild_from_recorded(stream_events)          # or rebuild(domain_events)
    candidate = DomainEvent.from_submitted(submitted, fallback_event_id=new_id)
    decision = decide(state, candidate, policy)
    match decision:
        case Accepted(event):   # append event (event.data() is the stored payload)
            state = state.apply(event)
        case Refused(violation):  # problem+json with violation.rule; record
            refusal_payload(violation, submitted, submitted_by=caller)

No I/O, no clock: every time comes from the events.
"""

from __future__ import annotations

from branchline_intake.domain.appointment import Appointment, AppointmentStatus
from branchline_intake.domain.client import Assessment, Client, ConsentGrant
from branchline_intake.domain.complaint import Complaint, ComplaintStatus
from branchline_intake.domain.consultation import Consultation, ConsultationStatus
from branchline_intake.domain.decision import Accepted, Decision, Refused, decide
from branchline_intake.domain.events import DomainEvent
from branchline_intake.domain.policy import DEFAULT_POLICY, IntakePolicy, add_months
from branchline_intake.domain.product import Disclosure, ProductSale, Sale, TermsConfirmation
from branchline_intake.domain.recorded import RecordedDecider, decide_on_state, decide_recorded
from branchline_intake.domain.refusal import refusal_payload
from branchline_intake.domain.state import (
    BusinessActivity,
    ClientState,
    rebuild,
    rebuild_from_recorded,
)
from branchline_intake.domain.violations import RuleViolation, RuleViolationError
from branchline_intake.domain.visit import Visit

__all__ = [
    "DEFAULT_POLICY",
    "Accepted",
    "Appointment",
    "AppointmentStatus",
    "Assessment",
    "BusinessActivity",
    "Client",
    "ClientState",
    "Complaint",
    "ComplaintStatus",
    "ConsentGrant",
    "Consultation",
    "ConsultationStatus",
    "Decision",
    "Disclosure",
    "DomainEvent",
    "IntakePolicy",
    "ProductSale",
    "RecordedDecider",
    "Refused",
    "RuleViolation",
    "RuleViolationError",
    "Sale",
    "TermsConfirmation",
    "Visit",
    "add_months",
    "decide",
    "decide_on_state",
    "decide_recorded",
    "rebuild",
    "rebuild_from_recorded",
    "refusal_payload",
]
