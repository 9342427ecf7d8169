"""Staff events in the read models (D-14, D-16): training hours for the D-12 measures, the
escalation an accepted gift makes due, and a member of staff's access request and erasure
(D-04).

Runs inside :func:`~.projector.project`'s transaction (effectively once with the event). The
decisions are :mod:`branchline_followup.domain.conflicts` and
:func:`branchline_followup.domain.quality.training_shortfalls`; this module reads and writes.
"""

from __future__ import annotations

from branchline_followup.application.ports import FollowupUnitOfWork
from branchline_followup.application.suitability import SaveTasks
from branchline_followup.domain import ClientContext, FollowupPolicy, apply_commands
from branchline_followup.domain.conflicts import escalates, gift_escalation, gift_of
from branchline_followup.domain.rules_privacy import (
    STAFF_ACCESS_EVENT_TYPES,
    staff_access_request_commands,
    staff_task_holder,
)
from branchline_shared.events.catalogue import EventType, StaffTrainingRecorded
from branchline_shared.events.typed import Decoded, payload_as
from branchline_shared.events.vocabulary import LifecycleStage

TRAINING_RECORDED = EventType.STAFF_TRAINING_RECORDED.value


async def on_staff_event(
    uow: FollowupUnitOfWork,
    typed: Decoded,
    policy: FollowupPolicy,
    save: SaveTasks,
) -> None:
    """Record the member of staff (and their training hours); escalate an accepted gift."""
    event = typed.envelope
    if event.staff_id is None:
        return
    await uow.activity.record_staff(event.staff_id, event.branch_id)
    # their erasure (D-04) and the clients their gifts name (whose holds hold it)
    await uow.privacy.apply_staff(event)
    if event.type in STAFF_ACCESS_EVENT_TYPES:
        # their access request's task (D-04), held under the key id of their texts
        holder = staff_task_holder(event.staff_id)
        if not uow.owns_client(holder):
            return  # a partitioned rebuild: the holder's process makes it
        await uow.lock_client(holder)
        before = {t.id: t for t in await uow.tasks.open_of(holder)}
        commands = staff_access_request_commands(typed, list(before.values()), policy)
        await save(uow, before, apply_commands(before, commands))
        return
    if event.type == TRAINING_RECORDED:
        # As stored: the training topic is free text, sealed with the member of staff's key.
        payload = payload_as(typed, StaffTrainingRecorded)
        await uow.activity.record_training(
            typed, event.staff_id, payload.hours, payload.completed_at
        )
        return
    gift = gift_of(typed)
    if gift is None or not escalates(gift, policy):
        return
    client_id = gift.client_id
    if not uow.owns_client(client_id):
        return  # a partitioned rebuild: the client's process escalates it
    await uow.lock_client(client_id)
    facts = await uow.clients.get(client_id)
    client = ClientContext(
        client_id=client_id,
        rm_id=facts.rm_id if facts else None,
        stage=LifecycleStage(facts.lifecycle_stage) if facts else LifecycleStage.PROSPECT,
        branch_id=facts.branch_id if facts else event.branch_id,
        risk_level=facts.risk_level if facts else None,
    )
    before = {t.id: t for t in await uow.tasks.open_of(client_id)}
    await save(uow, before, apply_commands(before, gift_escalation(typed, client, policy)))
