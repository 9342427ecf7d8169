"""Which callers may send which event types, beyond the writer roles of ``POST /v1/events``.

The product shelf and staff records (D-13, D-14, D-16) are the institution's own: an admin
(product governance, HR/compliance) maintains them, never a branch system, so a branch system
cannot put a product on sale or qualify its own staff. The approval of a late entry (D-05b)
is a supervisor's.
"""

from __future__ import annotations

from branchline_shared.events.catalogue import GOVERNANCE_EVENT_TYPES, SUPERVISOR_EVENT_TYPES
from branchline_shared.http.auth import Principal, Role
from branchline_shared.http.problems import Problem

GOVERNANCE_ROLES = frozenset({Role.ADMIN})
"""Who maintains the product shelf and the staff records."""
LATE_ENTRY_APPROVERS = frozenset({Role.SUPERVISOR})
"""Who approves a late entry (D-05b)."""


def allowed_roles(event_type: str) -> frozenset[Role] | None:
    """The roles that may send ``event_type``; ``None``: any writer."""
    if event_type in GOVERNANCE_EVENT_TYPES:
        return GOVERNANCE_ROLES
    if event_type in SUPERVISOR_EVENT_TYPES:
        return LATE_ENTRY_APPROVERS
    return None


def type_forbidden(event_type: str, caller: Principal) -> Problem | None:
    """The 403 problem when ``caller`` may not send ``event_type``, else ``None``."""
    roles = allowed_roles(event_type)
    if roles is None or caller.has_any(roles):
        return None
    return Problem(
        403,
        "Forbidden",
        f"{event_type!r} is sent by {' or '.join(sorted(r.value for r in roles))} only",
        kind="forbidden",
        errors=[{"field": "type", "message": "not allowed for this caller", "type": "forbidden"}],
    )
