"""Who a token may speak for (ADR-0011; docs/access-control.md, "Who may speak as whom").

The declared ``actor`` of an event is what the caller says; the ``submitted_by`` is who the
token proves it is. These rules bind the two before anything is decided or stored:

* a **branch system** writes only with a ``branch_id`` claim and only events of that branch;
  it relays the staff working at its branch (tellers, RMs at the counter) and the client (it is
  the only sender that may name the client as the actor, and then only the event's own
  client), never an auditor, admin or system identity;
* an **RM**, a **supervisor** or an **admin** speaks only as itself: ``actor.id`` is the token's
  subject and ``actor.role`` one of the token's roles;
* an **auditor** never writes (the routes refuse the role before these rules run).
"""

from __future__ import annotations

from dataclasses import dataclass

from branchline_shared.events.envelope import Actor, Submitter

BRANCH_SYSTEM = "branch_system"
CLIENT_ROLE = "client"
PERSONAL_ROLES = frozenset({"rm", "supervisor", "admin"})
"""Roles whose holders speak only as themselves."""
UNPROVABLE_ACTOR_ROLES = frozenset({"auditor", "admin", "system"})
"""Actor roles a branch system may not declare: they never work at a branch's counter."""


@dataclass(frozen=True)
class SpeakingRefused:
    field: str
    detail: str


def speaking_refusal(
    submitter: Submitter,
    *,
    actor: Actor,
    client_id: str | None,
    branch_id: str | None,
) -> SpeakingRefused | None:
    """None when ``submitter`` may send an event declaring ``actor`` for ``client_id`` at
    ``branch_id``; otherwise which field is refused and why."""
    roles = set(submitter.roles)
    if actor.id == submitter.sub and actor.role in roles & PERSONAL_ROLES:
        return None  # speaking as oneself, in one's own role
    if BRANCH_SYSTEM in roles:
        return _branch_system_refusal(submitter, actor, client_id, branch_id)
    return SpeakingRefused(
        "actor",
        f"a {'/'.join(sorted(roles))} token speaks only as itself: actor.id must be "
        f"{submitter.sub!r} with actor.role one of {sorted(roles & PERSONAL_ROLES)}",
    )


def _branch_system_refusal(
    submitter: Submitter, actor: Actor, client_id: str | None, branch_id: str | None
) -> SpeakingRefused | None:
    if submitter.branch_id is None:
        return SpeakingRefused(
            "branch_id", "a branch-system token without a branch_id claim cannot write events"
        )
    if branch_id != submitter.branch_id:
        return SpeakingRefused(
            "branch_id",
            f"this branch system writes only events of its branch {submitter.branch_id!r}",
        )
    if actor.role == CLIENT_ROLE:
        if client_id is None or actor.id != client_id:
            return SpeakingRefused("actor.id", "a client actor must be the event's own client")
        return None
    if actor.role in UNPROVABLE_ACTOR_ROLES:
        return SpeakingRefused(
            "actor.role",
            f"a branch system may not speak as {actor.role!r}: that person's own token must",
        )
    return None
