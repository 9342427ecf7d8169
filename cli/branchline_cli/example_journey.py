"""Valid example payloads for every event type, and one client's journey through all of them.

The load generator (``branchline loadgen``, :mod:`.loadgen`) walks :data:`EXAMPLE_JOURNEY` for
each simulated client after the shelf (:data:`EXAMPLE_SHELF`); tests use the same data
(``tests/support/examples.py``). It is tooling data, not part of any service: the journey
covers every event type, so every payload below is needed by the load generator.
``EXAMPLE_PAYLOADS[type]`` is a JSON-compatible ``data`` dict that its payload model accepts;
``EXAMPLE_JOURNEY`` is an ordered list of submissions for one client
(:data:`EXAMPLE_CLIENT_ID`) that intake's rules accept in this order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

EXAMPLE_CLIENT_ID = "C-10001"
EXAMPLE_BRANCH_ID = "BR-001"
EXAMPLE_RM_ID = "rm-42"
EXAMPLE_STAFF_ID = "staff-17"
EXAMPLE_SUPERVISOR_ID = "sup-3"
EXAMPLE_PRODUCT_ID = "P-FUND-007"
EXAMPLE_ADMIN_ID = "admin-1"
_TASK_ID = "5d2f1c3a-8e4b-4b7a-9c1d-2e3f4a5b6c7d"

_REFUSED_RECOMMENDATION: dict[str, Any] = {
    "event_id": "0193f0c2-7a1e-7c3b-9d2e-5f8a1b2c3d4e",
    "type": "product.recommended",
    "occurred_at": "2026-11-22T09:12:00+08:00",
    "client_id": EXAMPLE_CLIENT_ID,
    "branch_id": EXAMPLE_BRANCH_ID,
    "channel": "walk_in",
    "actor": {"id": EXAMPLE_RM_ID, "role": "rm"},
    "data": {"product_id": "P-FUND-099", "product_risk": "R5"},
}

_PAYLOADS: dict[str, dict[str, Any]] = {
    "client.registered": {"client_type": "individual", "rm_id": EXAMPLE_RM_ID},
    "client.consent_granted": {
        "purposes": ["service", "marketing"],
        "expires_at": "2031-11-20T00:00:00+08:00",
    },
    "client.consent_withdrawn": {"purposes": ["marketing"]},
    "client.personal_data_recorded": {
        "fields": {
            "name": "Wang Fang",
            "id_number": "110101199003070021",
            "phone": "+86 138 0013 8000",
            "address": "1 Chang'an Avenue, Beijing",
        },
        "purpose": "service",
    },
    "client.identity_verified": {
        "method": "networked_id_check",
        "document_type": "resident_id",
        "verification_ref": "NCIIC-7731",
        "document_expires_at": "2036-05-01T00:00:00+08:00",
    },
    "client.screened": {
        "result": "clear",
        "lists": ["PBOC AML list", "UN consolidated sanctions list"],
        "screening_ref": "SCR-2026-11-0042",
    },
    "client.beneficial_owner_recorded": {
        "owner_ref": "BO-77",
        "share_percent": "35",
        "owner_fields": {"name": "Li Lei", "nationality": "CN"},
    },
    "client.late_entry_approved": {
        "event_id": "0193f0c2-7a1e-7c3b-9d2e-5f8a1b2c3d99",
        "reason": "network outage at the branch; paper record checked by the supervisor",
    },
    "client.risk_assessed": {"level": "C3", "valid_until": "2027-11-20T09:10:00+08:00"},
    "client.erasure_requested": {"reason": "relationship ended, client asks for erasure"},
    "client.data_access_requested": {"channel": "online"},
    "client.personal_data_accessed": {
        "fields": ["name", "id_number", "phone", "address"],
        "purpose": "D-04 access request of the client",
    },
    "client.data_read": {
        "service": "followup",
        "route": "GET /v1/clients/{client_id}",
        "purpose": "preparing the client's revisit",
    },
    "client.personal_data_shredded": {
        "basis": "retention_ended",
        "erasure_event_id": "0193f0c2-7a1b-7c3d-8e4f-5a6b7c8d9e0f",
        "key_id": "k1a2b3c4",
        "relationship_ended_at": "2016-12-05T09:00:00+08:00",
        "retention_until": "2026-12-05T09:00:00+08:00",
    },
    "appointment.booked": {
        "appointment_id": "A-1001",
        "slot_start": "2026-11-22T09:00:00+08:00",
        "slot_end": "2026-11-22T09:30:00+08:00",
        "purpose": "wealth product consultation",
        "staff_id": EXAMPLE_STAFF_ID,
    },
    "appointment.confirmed": {"appointment_id": "A-1001"},
    "appointment.attended": {"appointment_id": "A-1001"},
    "appointment.cancelled": {"appointment_id": "A-1002", "reason": "client travelling"},
    "appointment.no_show": {"appointment_id": "A-1003"},
    "visit.arrived": {"visit_id": "V-1001", "ticket": "A017", "appointment_id": "A-1001"},
    "visit.needs_confirmed": {
        "visit_id": "V-1001",
        "category": "wealth_product",
        "note": "wants a medium-risk fund for 3 years",
    },
    "visit.guidance_given": {
        "visit_id": "V-1001",
        "materials": ["resident ID card", "bank card"],
    },
    "visit.documents_checked": {"visit_id": "V-1001", "complete": True, "missing": []},
    "visit.business_handled": {
        "visit_id": "V-1001",
        "counter": "window 3",
        "started_at": "2026-11-22T09:20:00+08:00",
        "ended_at": "2026-11-22T09:45:00+08:00",
    },
    "visit.next_steps_explained": {
        "visit_id": "V-1001",
        "note": "units confirmed on T+1; asked about other needs",
    },
    "visit.closed": {"visit_id": "V-1001", "outcome": "normal"},
    "consultation.opened": {
        "consultation_id": "Q-3001",
        "channel": "online",
        "question": "What are the fees of the balanced fund?",
    },
    "consultation.answered": {
        "consultation_id": "Q-3001",
        "answer": "1.2% subscription, 0.8% yearly management, no redemption fee after 1 year.",
    },
    "product.recommended": {
        "product_id": "P-FUND-007",
        "product_risk": "R3",
        "product_name": "Balanced Growth Fund",
    },
    "product.risk_disclosed": {
        "product_id": "P-FUND-007",
        "acknowledged": True,
        "items": ["risks", "returns", "fees", "holding_period"],
        "holding_period": "3 years or more",
        "product_risk": "R3",
    },
    "product.terms_confirmed": {
        "product_id": "P-FUND-007",
        "terms": {
            "expected_return": "variable, not guaranteed; 4-6% a year in the last 5 years",
            "period": "3 years recommended holding",
            "fees": "1.2% subscription, 0.8% yearly management",
            "repayment": "redeemable on any business day, T+2",
        },
    },
    "product.sold": {
        "product_id": "P-FUND-007",
        "amount": "250000.00",
        "currency": "CNY",
        "contract_id": "CT-2026-11-0042",
    },
    "product.approved": {
        "name": "Balanced Growth Fund",
        "category": "fund",
        "risk": "R3",
        "risk_factors": {"market": "R3", "credit": "R2", "liquidity": "R2"},
        "eligible_client_types": ["individual", "corporate"],
    },
    "product.rerated": {
        "risk": "R4",
        "effective_at": "2026-12-10T00:00:00+08:00",
        "reason": "equity share raised above 60% by the fund manager",
    },
    "product.suspended": {"reason": "fund manager under regulatory review"},
    "product.withdrawn": {"reason": "fund liquidated"},
    "staff.qualified": {
        "category": "fund",
        "certificate_id": "AMAC-2021-88123",
        "valid_until": "2027-06-30T23:59:59+08:00",
    },
    "staff.qualification_renewed": {
        "category": "fund",
        "valid_until": "2029-06-30T23:59:59+08:00",
        "certificate_id": "AMAC-2021-88123",
    },
    "staff.qualification_revoked": {"category": "fund", "reason": "certificate suspended"},
    "staff.training_recorded": {
        "hours": "6.5",
        "topic": "suitability and risk disclosure",
        "completed_at": "2026-11-18T17:00:00+08:00",
    },
    "staff.interest_declared": {
        "product_id": "P-BOND-003",
        "nature": "spouse employed by the issuer",
    },
    "staff.gift_recorded": {
        "client_id": "C-10001",
        "value": "0",
        "accepted": False,
        "description": "box of mooncakes offered at mid-autumn, declined",
    },
    "staff.erasure_requested": {
        "reason": "left the bank in 2016; asks that their records' texts be erased",
        "employment_ended_at": "2016-11-30T18:00:00+08:00",
    },
    "staff.data_access_requested": {"channel": "online"},
    "staff.personal_data_accessed": {
        "purpose": "D-04 access request of a former member of staff",
        "texts": ["staff.gift_recorded/description", "staff.training_recorded/topic"],
    },
    "staff.personal_data_shredded": {
        "basis": "retention_ended",
        "erasure_event_id": "0193f0c2-7a1b-7c3d-8e4f-5a6b7c8d9e1a",
        "key_id": "k9f8e7d6",
        "employment_ended_at": "2016-11-30T18:00:00+08:00",
        "retention_until": "2026-11-30T18:00:00+08:00",
    },
    "complaint.received": {
        "complaint_id": "K-5001",
        "severity": "important",
        "summary": "Waited 50 minutes although an appointment was booked.",
        "topic": "waiting_time",
        "complex": False,
        "visit_id": "V-1001",
        "problem": "waiting_time",
    },
    "complaint.acknowledged": {
        "complaint_id": "K-5001",
        "owner_id": EXAMPLE_RM_ID,
        "due_at": "2026-11-24T10:00:00+08:00",
    },
    "complaint.progress_reported": {
        "complaint_id": "K-5001",
        "note": "queue logs reviewed; appointment slot was not reserved at the counter",
        "next_update_by": "2026-11-24T14:00:00+08:00",
    },
    "complaint.promise_renegotiated": {
        "complaint_id": "K-5001",
        "promised_by": "2026-11-24T18:00:00+08:00",
        "reason": "awaiting_third_party",
        "alternative": "branch manager calls the client with the queue vendor's findings",
        "client_told": True,
        "told_via": "phone",
    },
    "complaint.resolved": {
        "complaint_id": "K-5001",
        "resolution": "apology; appointment slots now reserved at the counter",
        "compensation": {"kind": "points", "value": "500"},
        "root_cause": "process",
    },
    "complaint.corrective_action_planned": {
        "complaint_id": "K-5001",
        "action_id": "CA-77",
        "root_cause": "process",
        "action_kind": "process_change",
        "owner_id": EXAMPLE_SUPERVISOR_ID,
        "due_at": "2026-12-15T18:00:00+08:00",
        "description": "queue system reserves the counter for booked slots",
    },
    "complaint.corrective_action_completed": {
        "complaint_id": "K-5001",
        "action_id": "CA-77",
        "note": "vendor patch deployed at all counters",
    },
    "complaint.confirmed_by_client": {"complaint_id": "K-5001", "satisfied": True},
    "complaint.closed": {"complaint_id": "K-5001"},
    "feedback.survey_answered": {
        "visit_id": "V-1001",
        "scores": {
            "attitude": 95,
            "professionalism": 90,
            "response_speed": 70,
            "risk_management": 88,
            "convenience": 80,
        },
        "channel": "sms",
    },
    "feedback.received": {
        "kind": "suggestion",
        "comment": "please open a second counter on Saturdays",
        "channel": "app",
    },
    "feedback.responded": {
        "responds_to_event_id": "0193f0c2-7a1e-7c3b-9d2e-5f8a1b2c3d4f",
        "channel": "phone",
        "root_cause": "process",
        "note": "thanked the client; Saturday staffing under review",
    },
    "consultation.promise_renegotiated": {
        "consultation_id": "Q-3002",
        "promised_by": "2026-11-24T17:00:00+08:00",
        "reason": "awaiting_third_party",
        "alternative": "the fund company answers by phone directly",
        "client_told": True,
        "told_via": "phone",
    },
    "client.account_closed": {"reason": "relocation", "note": "moving abroad"},
    "client.account_reopened": {"reason": "closed_in_error"},
    "audit.legal_hold_placed": {
        "hold_id": "LH-2026-001",
        "reason": "litigation",
        "case_reference": "CASE-2026-118",
    },
    "audit.legal_hold_lifted": {"hold_id": "LH-2026-001", "reason": "matter_closed"},
    "rule.violation_refused": {
        "rule": "D-05",
        "title": "Product risk above the client's tolerance",
        "detail": "product P-FUND-099 is R5, the client's assessment allows up to C3",
        "field": "data.product_risk",
        "refused_event": _REFUSED_RECOMMENDATION,
        "submitted_by": {"id": "branch-system-BR-001", "role": "branch_system"},
    },
    "followup.task_created": {
        "task_id": _TASK_ID,
        "kind": "satisfaction_survey",
        "assignee": EXAMPLE_RM_ID,
        "due_at": "2026-11-25T10:00:00+08:00",
        "rule": "D-01b",
        "subject_id": "V-1001",
        "profile": "default",
    },
    "followup.reassigned": {
        "task_id": _TASK_ID,
        "from_assignee": EXAMPLE_RM_ID,
        "to_assignee": "rm-7",
        "reason": "RM on leave",
    },
    "followup.overdue": {"task_id": _TASK_ID, "due_at": "2026-11-25T10:00:00+08:00"},
    "followup.escalated": {"task_id": _TASK_ID, "supervisor_id": EXAMPLE_SUPERVISOR_ID},
    "followup.completed": {
        "task_id": _TASK_ID,
        "outcome": "contacted",
        "kind": "satisfaction_survey",
        "note": "survey answered by phone",
        "next_contact_at": "2027-02-20T10:00:00+08:00",
    },
}

EXAMPLE_PAYLOADS: Mapping[str, Mapping[str, Any]] = MappingProxyType(_PAYLOADS)
"""Event type → a valid ``data`` dict (read-only view; copy with :func:`example_data`)."""


@dataclass(frozen=True, slots=True)
class JourneyStep:
    """One submission of :data:`EXAMPLE_JOURNEY` (or of :data:`EXAMPLE_SHELF`, whose steps
    name a product or a member of staff as their subject)."""

    type: str
    occurred_at: str
    data: Mapping[str, Any]
    actor_id: str = EXAMPLE_STAFF_ID
    actor_role: str = "teller"
    channel: str = "walk_in"
    subject_field: str = "client_id"
    subject_id: str | None = None
    """The subject of a shelf or staff step (a client step takes the journey's client)."""


def _step(
    event_type: str,
    occurred_at: str,
    data: Mapping[str, Any] | None = None,
    *,
    actor: tuple[str, str] = (EXAMPLE_STAFF_ID, "teller"),
    subject: tuple[str, str | None] = ("client_id", None),
    **changes: Any,
) -> JourneyStep:
    """A step sending ``data``, else the type's example payload with ``changes`` (a second
    appointment, consultation); ``subject``: the field and id of a shelf or staff step."""
    chosen = _PAYLOADS[event_type] if data is None else data
    if changes:
        chosen = {**chosen, **changes}
    return JourneyStep(
        event_type,
        occurred_at,
        chosen,
        actor_id=actor[0],
        actor_role=actor[1],
        subject_field=subject[0],
        subject_id=subject[1],
    )


def _governance(event_type: str, occurred_at: str, subject: tuple[str, str]) -> JourneyStep:
    return _step(event_type, occurred_at, actor=(EXAMPLE_ADMIN_ID, "admin"), subject=subject)


_PRODUCT = ("product_id", EXAMPLE_PRODUCT_ID)
_RM_AS_STAFF = ("staff_id", EXAMPLE_RM_ID)
_LEAVER = ("staff_id", "staff-leaver-1")
"""A former member of staff (not the journey's RM), whose own texts are erased (D-04)."""

EXAMPLE_SHELF: tuple[JourneyStep, ...] = (
    _governance("product.approved", "2026-11-01T09:00:00+08:00", _PRODUCT),
    _governance("staff.qualified", "2026-11-01T09:05:00+08:00", _RM_AS_STAFF),
    _governance("staff.training_recorded", "2026-11-18T18:00:00+08:00", _RM_AS_STAFF),
    _governance("staff.interest_declared", "2026-11-19T09:00:00+08:00", _RM_AS_STAFF),
    _governance("staff.gift_recorded", "2026-11-23T12:00:00+08:00", _RM_AS_STAFF),
    _governance("staff.qualification_renewed", "2026-11-30T09:00:00+08:00", _RM_AS_STAFF),
    _governance("product.rerated", "2026-12-01T09:00:00+08:00", _PRODUCT),
    _governance("product.suspended", "2026-12-02T10:00:00+08:00", _PRODUCT),
    _governance("product.withdrawn", "2026-12-02T11:00:00+08:00", _PRODUCT),
    _governance("staff.qualification_revoked", "2026-12-02T12:00:00+08:00", _RM_AS_STAFF),
    _governance("staff.data_access_requested", "2026-12-03T09:00:00+08:00", _LEAVER),
    _step(
        "staff.personal_data_accessed",
        "2026-12-03T09:30:00+08:00",
        actor=("admin-1", "admin"),
        subject=_LEAVER,
    ),
    _governance("staff.erasure_requested", "2026-12-04T09:00:00+08:00", _LEAVER),
    _step(
        "staff.personal_data_shredded",
        "2026-12-04T10:00:00+08:00",
        actor=("privacy-shredder", "system"),
        subject=_LEAVER,
    ),
)
"""The product shelf and staff records the journey relies on (D-13, D-14, D-16), in an
order intake accepts: the product approved and the RM qualified for funds before the
journey's recommendation and sale; later re-rated, suspended and withdrawn."""

_RM = (EXAMPLE_RM_ID, "rm")
_SYSTEM = ("followup-service", "system")

EXAMPLE_JOURNEY: tuple[JourneyStep, ...] = (
    _step("client.registered", "2026-11-20T09:00:00+08:00", actor=_RM),
    _step("client.consent_granted", "2026-11-20T09:01:00+08:00", actor=_RM),
    _step("client.personal_data_recorded", "2026-11-20T09:02:00+08:00", actor=_RM),
    _step("client.identity_verified", "2026-11-20T09:05:00+08:00", actor=_RM),
    _step("client.screened", "2026-11-20T09:06:00+08:00", actor=_RM),
    _step("client.beneficial_owner_recorded", "2026-11-20T09:07:00+08:00", actor=_RM),
    _step("client.risk_assessed", "2026-11-20T09:10:00+08:00", actor=_RM),
    _step("appointment.booked", "2026-11-21T15:00:00+08:00", actor=_RM),
    _step("appointment.confirmed", "2026-11-21T18:00:00+08:00", actor=_RM),
    _step("visit.arrived", "2026-11-22T09:00:00+08:00"),
    _step("appointment.attended", "2026-11-22T09:01:00+08:00"),
    _step("visit.needs_confirmed", "2026-11-22T09:03:00+08:00"),
    _step("visit.guidance_given", "2026-11-22T09:05:00+08:00"),
    _step("visit.documents_checked", "2026-11-22T09:08:00+08:00"),
    _step("consultation.opened", "2026-11-22T09:09:00+08:00"),
    _step("consultation.answered", "2026-11-22T09:09:20+08:00"),
    _step("consultation.opened", "2026-11-22T09:09:30+08:00", consultation_id="Q-3002"),
    _step(
        "consultation.answered",
        "2026-11-22T09:09:40+08:00",
        {"consultation_id": "Q-3002", "promised_by": "2026-11-23T17:00:00+08:00"},
    ),
    _step("consultation.promise_renegotiated", "2026-11-23T11:00:00+08:00", actor=_RM),
    _step("product.recommended", "2026-11-22T09:10:00+08:00", actor=_RM),
    _step("product.risk_disclosed", "2026-11-22T09:14:00+08:00", actor=_RM),
    _step("product.terms_confirmed", "2026-11-22T09:18:00+08:00", actor=_RM),
    _step("visit.business_handled", "2026-11-22T09:45:00+08:00"),
    _step("product.sold", "2026-11-22T09:45:00+08:00", actor=_RM),
    _step("visit.next_steps_explained", "2026-11-22T09:47:00+08:00"),
    _step("visit.closed", "2026-11-22T09:50:00+08:00"),
    _step("feedback.survey_answered", "2026-11-23T10:00:00+08:00"),
    _step("complaint.received", "2026-11-23T10:05:00+08:00"),
    _step("complaint.acknowledged", "2026-11-23T11:00:00+08:00", actor=_RM),
    _step("complaint.progress_reported", "2026-11-24T09:00:00+08:00", actor=_RM),
    _step("complaint.promise_renegotiated", "2026-11-24T12:00:00+08:00", actor=_RM),
    _step("complaint.resolved", "2026-11-24T16:00:00+08:00", actor=_RM),
    _step("complaint.corrective_action_planned", "2026-11-24T16:30:00+08:00", actor=_RM),
    _step("complaint.confirmed_by_client", "2026-11-25T10:00:00+08:00", actor=_RM),
    _step("complaint.closed", "2026-11-25T10:05:00+08:00", actor=_RM),
    _step("complaint.corrective_action_completed", "2026-12-01T10:00:00+08:00", actor=_RM),
    _step("feedback.received", "2026-11-26T08:00:00+08:00"),
    _step("feedback.responded", "2026-11-26T09:00:00+08:00", actor=_RM),
    _step(
        "appointment.booked",
        "2026-11-26T09:00:00+08:00",
        actor=_RM,
        appointment_id="A-1002",
        slot_start="2026-12-01T10:00:00+08:00",
        slot_end=None,
    ),
    _step("appointment.cancelled", "2026-11-27T09:00:00+08:00", actor=_RM),
    _step(
        "appointment.booked",
        "2026-11-27T09:30:00+08:00",
        actor=_RM,
        appointment_id="A-1003",
        slot_start="2026-12-02T10:00:00+08:00",
        slot_end=None,
    ),
    _step("appointment.confirmed", "2026-11-28T09:00:00+08:00", {"appointment_id": "A-1003"}),
    _step("appointment.no_show", "2026-12-02T11:00:00+08:00"),
    _step("followup.task_created", "2026-11-22T09:50:01+08:00", actor=_SYSTEM),
    _step(
        "followup.reassigned",
        "2026-11-24T09:00:00+08:00",
        actor=(EXAMPLE_SUPERVISOR_ID, "supervisor"),
    ),
    _step("followup.overdue", "2026-11-25T10:00:00+08:00", actor=_SYSTEM),
    _step("followup.escalated", "2026-11-26T10:00:00+08:00", actor=_SYSTEM),
    _step("followup.completed", "2026-11-26T11:00:00+08:00", actor=("rm-7", "rm")),
    _step("rule.violation_refused", "2026-11-22T09:12:00+08:00", actor=("intake", "system")),
    _step(
        "client.late_entry_approved",
        "2026-11-29T09:00:00+08:00",
        actor=(EXAMPLE_SUPERVISOR_ID, "supervisor"),
    ),
    _step("client.data_access_requested", "2026-12-03T09:00:00+08:00"),
    _step("client.personal_data_accessed", "2026-12-03T09:30:00+08:00", actor=("admin-1", "admin")),
    _step("client.data_read", "2026-12-03T09:40:00+08:00", actor=("rm-7", "rm")),
    _step("client.account_closed", "2026-12-03T10:00:00+08:00", actor=_RM),
    _step("client.account_reopened", "2026-12-03T11:00:00+08:00", actor=_RM),
    _step("audit.legal_hold_placed", "2026-12-03T12:00:00+08:00", actor=("auditor-1", "auditor")),
    _step("audit.legal_hold_lifted", "2026-12-03T13:00:00+08:00", actor=("auditor-1", "auditor")),
    _step("client.consent_withdrawn", "2026-12-04T09:00:00+08:00"),
    _step("client.erasure_requested", "2026-12-05T09:00:00+08:00"),
    _step("client.personal_data_shredded", "2026-12-05T10:00:00+08:00", actor=_SYSTEM),
)
"""One client's history in an order intake accepts, covering every event type."""
