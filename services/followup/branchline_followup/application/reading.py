"""The record of every read of a client's data through followup (D-11: who looked at what,
when and why): a ``client.data_read`` in followup's event store, published to the audit trail
like every event, as the audit API records its own reads."""

from __future__ import annotations

import uuid

from branchline_followup.application.recording import SOURCE, FollowupContext
from branchline_shared.events.catalogue import CATALOGUE_VERSION, ClientDataRead, EventType
from branchline_shared.events.envelope import Actor, RecordedEvent, Submitter

READ_EVENT_TYPE = EventType.CLIENT_DATA_READ.value


def reads_stream_id(client_id: str) -> str:
    return f"followup-reads-{client_id}"


async def record_client_read(
    ctx: FollowupContext, who: Submitter, *, client_id: str, route: str, purpose: str | None
) -> None:
    now = ctx.clock.system_now()
    stream = reads_stream_id(client_id)
    payload = ClientDataRead(service=SOURCE, route=route, purpose=purpose or None)
    async with ctx.units.begin() as uow:
        versions = await uow.events.lock_streams([stream])
        event = RecordedEvent(
            event_id=uuid.uuid4(),
            type=READ_EVENT_TYPE,
            schema_version=CATALOGUE_VERSION[READ_EVENT_TYPE],
            occurred_at=now,
            recorded_at=now,
            source=SOURCE,
            actor=Actor(id=who.sub, role=who.roles[0] if who.roles else "unknown"),
            client_id=client_id,
            branch_id=who.branch_id,
            stream_id=stream,
            stream_version=versions.get(stream, 0) + 1,
            data=payload.model_dump(mode="json", exclude_none=True),
            submitted_by=who,
        )
        await uow.events.append([event], topic=ctx.topic)
