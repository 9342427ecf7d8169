"""Reads of a client's streams: who may see them (docs/access-control.md, "Scope") and the
record of every read (D-11: who looked at what, when and why), like the audit API's reads."""

from __future__ import annotations

from branchline_intake.application.submit import IntakeContext, client_rm
from branchline_shared.access.reads import client_read
from branchline_shared.access.scope import sees_client
from branchline_shared.events.envelope import Submitter, client_stream_id

SOURCE = "intake"
_STREAM_PREFIXES = ("client-", "refusals-")


def client_of_stream(stream_id: str) -> str | None:
    """The client a stream belongs to (``client-<id>``, ``refusals-<id>``), else None."""
    for prefix in _STREAM_PREFIXES:
        if stream_id.startswith(prefix) and len(stream_id) > len(prefix):
            return stream_id[len(prefix) :]
    return None


def reads_stream_id(client_id: str) -> str:
    return f"reads-{client_id}"


async def stream_in_scope(ctx: IntakeContext, who: Submitter, client_id: str) -> bool:
    """An RM's own client, a supervisor's team's; a branch system sees its branch's events of
    any client (filtered by the caller); admins everything."""
    if {"admin", "branch_system"} & set(who.roles):
        return True
    first = await ctx.store.read_stream(client_stream_id(client_id), from_version=1, limit=1)
    history = [s.event for s in first]
    return sees_client(who, ctx.staff, rm_id=client_rm(history))


async def record_client_read(
    ctx: IntakeContext, who: Submitter, *, client_id: str, route: str, purpose: str | None
) -> None:
    """A ``client.data_read`` on the client's reads stream, published like every event, so the
    audit trail shows the read (:func:`branchline_shared.access.reads.client_read`)."""
    now = ctx.clock.now()
    stream = reads_stream_id(client_id)
    async with ctx.store.unit_of_work() as uow:
        versions = await uow.lock_streams([stream])
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
        uow.stage(event, topic=ctx.topic, submission_hash=None)
        await uow.commit()
