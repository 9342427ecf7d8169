"""Due diligence (D-03): which identity checks open the gate, document expiry, AML / sanctions
screening and beneficial owners; and the supervisor's approvals of late entries (D-05b).

The gate for an account opening, a sale or a contract, as of the event's time:

* an identity verification by a method the policy counts (default ``networked_id_check``;
  ``in_person`` or ``video`` are recorded but do not open it), whose document had not expired;
* a screening whose latest result is ``clear`` (``hit`` or ``pending`` block until cleared);
* for a corporate or institutional client, its beneficial owners recorded.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from branchline_intake.domain.policy import IntakePolicy
from branchline_intake.domain.violations import D03, refuse
from branchline_shared.events.catalogue import ClientType, IdentityMethod, ScreeningResult


@dataclass(frozen=True, slots=True)
class IdentityCheck:
    """One identity verification (D-03)."""

    event_id: uuid.UUID
    method: IdentityMethod
    at: datetime
    document_expires_at: datetime | None

    def document_valid_at(self, at: datetime) -> bool:
        return self.document_expires_at is None or at < self.document_expires_at


@dataclass(frozen=True, slots=True)
class Screening:
    """One AML / sanctions screening result (D-03)."""

    event_id: uuid.UUID
    result: ScreeningResult
    at: datetime


@dataclass(frozen=True, slots=True)
class BeneficialOwner:
    event_id: uuid.UUID
    owner_ref: str
    share_percent: Decimal
    at: datetime


@dataclass(frozen=True, slots=True)
class LateEntryApproval:
    """A supervisor's approval of the late entry of ``approved_event_id`` (D-05b)."""

    event_id: uuid.UUID
    approved_event_id: uuid.UUID
    at: datetime


def check_identity_gate(
    checks: tuple[IdentityCheck, ...], at: datetime, policy: IntakePolicy, what: str
) -> uuid.UUID:
    """D-03: a verification by a gate-opening method, made by ``at``, whose document is valid
    at ``at``; returns its event id (the as-of proof)."""
    made = [c for c in checks if c.at <= at]
    if not made:
        raise refuse(
            D03,
            "Identity not verified",
            f"{what} needs the client's identity verified first (client.identity_verified)",
        )
    counting = [c for c in made if c.method in policy.identity_gate_methods]
    if not counting:
        methods = ", ".join(sorted(m.value for m in policy.identity_gate_methods))
        used = ", ".join(sorted({c.method.value for c in made}))
        raise refuse(
            D03,
            "Identity method does not open the gate",
            f"{what} needs a verification by {methods}; the client was verified by {used}",
        )
    valid = [c for c in counting if c.document_valid_at(at)]
    if not valid:
        latest = max(counting, key=lambda c: c.at)
        expiry = latest.document_expires_at.isoformat() if latest.document_expires_at else "?"
        raise refuse(
            D03,
            "Identity document expired",
            f"{what}: the document of verification {latest.event_id} expired at {expiry}: "
            "verify the client again",
        )
    return max(valid, key=lambda c: c.at).event_id


def check_screening(
    screenings: tuple[Screening, ...], at: datetime, policy: IntakePolicy, what: str
) -> uuid.UUID | None:
    """D-03: the latest screening result by ``at`` is ``clear`` (none at all is refused when
    the policy requires screening, its default); returns its event id."""
    made = [s for s in screenings if s.at <= at]
    if not made:
        if policy.screening_required:
            raise refuse(
                D03,
                "Client not screened",
                f"{what} needs an AML / sanctions screening result (client.screened)",
            )
        return None
    latest = max(made, key=lambda s: s.at)
    if latest.result is not ScreeningResult.CLEAR:
        raise refuse(
            D03,
            f"Screening {latest.result.value}",
            f"{what} is blocked: the latest screening ({latest.event_id}) is "
            f"{latest.result.value} until a clear result is recorded",
        )
    return latest.event_id


_OWNED_TYPES = frozenset({ClientType.CORPORATE, ClientType.INSTITUTIONAL})


def check_beneficial_owners(
    client_type: ClientType | None,
    owners: tuple[BeneficialOwner, ...],
    at: datetime,
    what: str,
) -> None:
    """D-03: a corporate or institutional client's beneficial owners are recorded first."""
    if client_type in _OWNED_TYPES and not any(o.at <= at for o in owners):
        raise refuse(
            D03,
            "Beneficial owners not recorded",
            f"{what} for a {client_type.value} client needs its beneficial owners "
            "(client.beneficial_owner_recorded)",
        )
