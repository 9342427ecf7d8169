"""The D-04 follow-up rule: a client's access request is answered within its deadline.

``client.data_access_requested`` makes a ``data_access_request`` task due for the privacy
officer, ``access_request_within`` (15 days by default, or the branch's jurisdiction profile's
own figure) after the request. ``client.personal_data_accessed`` naming the request
(``request_event_id``) completes it: the answer itself is the recorded fact that closes the loop.
``client.erasure_requested`` cancels it: restricted data is shown to nobody.

A member of staff is a data subject too (:func:`staff_access_request_commands`): their
``staff.data_access_requested`` makes the same task due (the same officer, the same deadline
settings), held under the key id of their own texts, ``#staff/<staff_id>`` (``#`` begins no
client id, so their tasks never meet a client's); ``staff.personal_data_accessed`` completes
it and ``staff.erasure_requested`` cancels it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import ClassVar

from branchline_followup.domain.business_days import require_aware
from branchline_followup.domain.opening import (
    cancel,
    complete,
    open_for_event,
    open_of,
    open_task,
)
from branchline_followup.domain.payloads import read_payload
from branchline_followup.domain.policy import FollowupPolicy
from branchline_followup.domain.tasks import ClientContext, FollowupTask, TaskCommand
from branchline_followup.domain.vocabulary import TaskKind, TaskRule
from branchline_shared.events import catalogue as c
from branchline_shared.events.catalogue import EventType
from branchline_shared.events.sealing_keys import staff_key_id
from branchline_shared.events.typed import Decoded

DATA_ACCESS_REQUESTED = EventType.CLIENT_DATA_ACCESS_REQUESTED.value
ERASURE_REQUESTED = EventType.CLIENT_ERASURE_REQUESTED.value
PERSONAL_DATA_ACCESSED = EventType.CLIENT_PERSONAL_DATA_ACCESSED.value
STAFF_DATA_ACCESS_REQUESTED = EventType.STAFF_DATA_ACCESS_REQUESTED.value
STAFF_ERASURE_REQUESTED = EventType.STAFF_ERASURE_REQUESTED.value
STAFF_PERSONAL_DATA_ACCESSED = EventType.STAFF_PERSONAL_DATA_ACCESSED.value
STAFF_ACCESS_EVENT_TYPES = frozenset(
    {STAFF_DATA_ACCESS_REQUESTED, STAFF_ERASURE_REQUESTED, STAFF_PERSONAL_DATA_ACCESSED}
)
"""The staff events that open, complete or cancel a member of staff's access request."""


def access_request_subject(request_event_id: uuid.UUID) -> str:
    """The subject of the task answering one access request: the request itself."""
    return f"access-request:{request_event_id}"


class DataAccessRequestRule:
    """D-04 access requests (module docstring)."""

    rule: ClassVar[TaskRule] = TaskRule.PERSONAL_DATA
    event_types: ClassVar[frozenset[str]] = frozenset(
        {DATA_ACCESS_REQUESTED, PERSONAL_DATA_ACCESSED, ERASURE_REQUESTED}
    )

    def decide(
        self,
        typed: Decoded,
        client: ClientContext,
        open_tasks: Sequence[FollowupTask],
        policy: FollowupPolicy,
    ) -> list[TaskCommand]:
        event = typed.envelope
        if event.type == DATA_ACCESS_REQUESTED:
            profile = policy.profile_for(client.branch_id)
            return [
                open_for_event(
                    event,
                    policy,
                    kind=TaskKind.DATA_ACCESS_REQUEST,
                    subject=access_request_subject(event.event_id),
                    assignee=policy.privacy_officer,
                    due_at=require_aware(event.occurred_at)
                    + policy.access_request_within_for(profile),
                    branch_id=client.branch_id,
                    profile=profile,
                )
            ]
        return _access_request_closed(
            typed,
            open_tasks,
            erased=event.type == ERASURE_REQUESTED,
            accessed_type=c.ClientPersonalDataAccessed,
        )


def staff_task_holder(staff_id: str) -> str:
    """What a member of staff's privacy tasks are held under (a task's ``client_id``): the key
    id of their own texts."""
    return staff_key_id(staff_id)


def staff_access_request_commands(
    typed: Decoded, open_tasks: Sequence[FollowupTask], policy: FollowupPolicy
) -> list[TaskCommand]:
    """D-04 for a member of staff (module docstring); ``open_tasks`` are those held under
    :func:`staff_task_holder`."""
    event = typed.envelope
    if event.staff_id is None or event.type not in STAFF_ACCESS_EVENT_TYPES:
        return []
    if event.type == STAFF_DATA_ACCESS_REQUESTED:
        profile = policy.profile_for(event.branch_id)
        return [
            open_task(
                policy,
                kind=TaskKind.DATA_ACCESS_REQUEST,
                cause_event_id=event.event_id,
                client_id=staff_task_holder(event.staff_id),
                branch_id=event.branch_id,
                assignee=policy.privacy_officer,
                subject=access_request_subject(event.event_id),
                opened_at=event.occurred_at,
                due_at=require_aware(event.occurred_at) + policy.access_request_within_for(profile),
                profile=profile,
            )
        ]
    return _access_request_closed(
        typed,
        open_tasks,
        erased=event.type == STAFF_ERASURE_REQUESTED,
        accessed_type=c.StaffPersonalDataAccessed,
    )


def _access_request_closed(
    typed: Decoded,
    open_tasks: Sequence[FollowupTask],
    *,
    erased: bool,
    accessed_type: type[c.ClientPersonalDataAccessed] | type[c.StaffPersonalDataAccessed],
) -> list[TaskCommand]:
    """What ends a subject's open access request, client or member of staff alike: their
    erasure request cancels it (from then on the data is shown to nobody, so it can no longer
    be answered with it), an access that names it answers it; an access outside a request
    (e.g. an investigation) closes nothing (D-04)."""
    event = typed.envelope
    if erased:
        return cancel(
            open_of(open_tasks, {TaskKind.DATA_ACCESS_REQUEST}),
            event,
            "erasure requested: personal data restricted (D-04)",
        )
    accessed = read_payload(typed, accessed_type, TaskRule.PERSONAL_DATA)
    if accessed.request_event_id is None:
        return []
    subject = access_request_subject(accessed.request_event_id)
    return complete(open_of(open_tasks, {TaskKind.DATA_ACCESS_REQUEST}, subject), event, "answered")
