"""Accepted gifts escalate (D-16).

Staff record every gift or benefit a client offers (``staff.gift_recorded``, on the staff
member's stream; recording one is never refused). An accepted gift worth more than
:attr:`FollowupPolicy.gift_accept_threshold` (default 0: any accepted gift of value) breaks
the policy: a ``gift_escalation`` task is due for the staff member's supervisor (compliance,
the default supervisor, when the staff member has none or is their own) within
:attr:`FollowupPolicy.gift_escalation_within` (default 24 hours). The task belongs to the
client who gave the gift. A declined gift, or one within the threshold, makes no task.

Pure: the event and the client in, the task command out.
"""

from __future__ import annotations

from branchline_followup.domain.opening import open_task
from branchline_followup.domain.payloads import read_payload
from branchline_followup.domain.policy import FollowupPolicy
from branchline_followup.domain.tasks import ClientContext, CreateTask
from branchline_followup.domain.vocabulary import TaskKind, TaskRule
from branchline_shared.events import catalogue as c
from branchline_shared.events.typed import Decoded

GIFT_RECORDED = c.EventType.STAFF_GIFT_RECORDED.value


def gift_of(typed: Decoded) -> c.StaffGiftRecorded | None:
    """The recorded gift (``None``: not a gift event)."""
    if typed.envelope.type != GIFT_RECORDED:
        return None
    return read_payload(typed, c.StaffGiftRecorded, TaskRule.CONFLICTS)


def escalates(gift: c.StaffGiftRecorded, policy: FollowupPolicy) -> bool:
    """D-16: an accepted gift above the threshold."""
    return gift.accepted and gift.value > policy.gift_accept_threshold


def gift_escalation(
    typed: Decoded, client: ClientContext, policy: FollowupPolicy
) -> list[CreateTask]:
    """The escalation the gift event makes due (none when it does not escalate)."""
    gift = gift_of(typed)
    event = typed.envelope
    if gift is None or gift.client_id != client.client_id or not escalates(gift, policy):
        return []
    staff_id = event.staff_id or event.actor.id
    return [
        open_task(
            policy,
            kind=TaskKind.GIFT_ESCALATION,
            cause_event_id=event.event_id,
            client_id=client.client_id,
            branch_id=client.branch_id or event.branch_id,
            assignee=policy.supervisor_of(staff_id),
            subject=f"staff:{staff_id}",
            opened_at=event.occurred_at,
            due_at=event.occurred_at + policy.gift_escalation_within,
        )
    ]
