"""Who sees which client (D-11 need to know; docs/access-control.md, "Scope").

An RM sees their own clients (the client's RM is them); a supervisor their team's (the RMs
whose supervisor they are, from ``staff_supervisors`` / ``staff_default_supervisor``);
a branch system the clients and events of its own branch; auditors and admins are not scoped
here (auditors read through the audit API, admins operate). Out of scope answers 404, so a
client's existence does not leak.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from branchline_shared.events.envelope import Submitter

BROAD_ROLES = frozenset({"admin", "auditor"})


@dataclass(frozen=True)
class StaffDirectory:
    """Who supervises whom: RM id -> supervisor id, and the supervisor of everyone else."""

    supervisors: Mapping[str, str] = field(default_factory=dict)
    default_supervisor: str = "supervisor"

    def supervisor_of(self, rm_id: str) -> str:
        return self.supervisors.get(rm_id, self.default_supervisor)

    def is_supervisor(self, staff_id: str) -> bool:
        return staff_id == self.default_supervisor or staff_id in self.supervisors.values()

    def in_team(self, supervisor_id: str, staff_id: str) -> bool:
        """``staff_id`` is the supervisor or one of their RMs."""
        return staff_id == supervisor_id or self.supervisor_of(staff_id) == supervisor_id

    def team_filter(self, supervisor_id: str) -> tuple[frozenset[str], frozenset[str]]:
        """The team of ``supervisor_id`` as (members, or if none: staff outside it): the
        default supervisor's team is everyone not mapped to another supervisor."""
        if supervisor_id == self.default_supervisor:
            others = frozenset(rm for rm, sup in self.supervisors.items() if sup != supervisor_id)
            return frozenset(), others - {supervisor_id}
        members = {rm for rm, sup in self.supervisors.items() if sup == supervisor_id}
        return frozenset(members | {supervisor_id}), frozenset()


def sees_client(
    who: Submitter,
    directory: StaffDirectory,
    *,
    rm_id: str | None,
    branch_ids: Iterable[str | None] = (),
) -> bool:
    """May ``who`` see (or write for) the client owned by ``rm_id``, served at ``branch_ids``?"""
    roles = set(who.roles)
    if roles & BROAD_ROLES:
        return True
    if (
        "rm" in roles
        and rm_id is not None
        and rm_id == who.sub
        and not _bound_elsewhere(who, directory)
    ):
        return True
    if "supervisor" in roles and rm_id is not None and directory.in_team(who.sub, rm_id):
        return True
    return (
        "branch_system" in roles and who.branch_id is not None and who.branch_id in set(branch_ids)
    )


def _bound_elsewhere(who: Submitter, directory: StaffDirectory) -> bool:
    """A subject that names a supervisor is bound to the supervisor role: an RM-only token
    carrying it (``sub=supervisor``) gains nothing."""
    return "supervisor" not in who.roles and directory.is_supervisor(who.sub)


def rm_scope_subject(who: Submitter, directory: StaffDirectory) -> str | None:
    """The RM whose own work ``who`` sees as an RM, or None (a subject bound elsewhere)."""
    if "rm" not in who.roles or _bound_elsewhere(who, directory):
        return None
    return who.sub
