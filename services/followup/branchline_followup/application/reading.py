"""The record of every read of a client's data through followup (D-11: who looked at what,
when and why): a ``client.data_read`` in followup's event store, published to the audit trail
like every event, as the audit API records its own reads. What it records:
:func:`branchline_shared.access.reads.client_read`."""

from __future__ import annotations

from branchline_followup.application.recording import SOURCE, FollowupContext
from branchline_shared.access.reads import client_read
from branchline_shared.events.envelope import Submitter
from branchline_shared.kafka.wire import SourcePosition


def reads_stream_id(client_id: str) -> str:
    return f"followup-reads-{client_id}"


async def record_client_read(
    ctx: FollowupContext, who: Submitter, *, client_id: str, route: str, purpose: str | None
) -> None:
    now = ctx.clock.system_now()
    stream = reads_stream_id(client_id)
    async with ctx.units.begin() as uow:
        versions = await uow.events.lock_streams([stream])
        event = client_read(
            who,
            source=SOURCE,
            client_id=client_id,
            stream_id=stream,
            stream_version=versions.get(stream, 0) + 1,
            route=route,
            purpose=purpose,
            at=now,
        )
        (stored,) = await uow.events.append([event], topic=ctx.topic)
        # Applied where recorded, as every followup event (it changes no view): the worker
        # skips the Kafka copies of followup's own events (#12, ADR-0003).
        await uow.mark_applied(event, SourcePosition(SOURCE, stored.global_position))
