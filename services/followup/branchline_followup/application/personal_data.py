"""D-04 access requests: the client's personal data in clear, with where each value came from;
the same for a member of staff's own texts (sealed under ``#staff/<staff_id>``).

Answering is itself a recorded fact (``client.personal_data_accessed``, through followup's
event store and outbox, so the audit trail holds it) and closes the access-request task the
request made due. After an erasure request the data is restricted (shown to nobody); after
shredding it no longer exists.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from branchline_followup.application.ports import FollowupUnitOfWork
from branchline_followup.application.projector import project
from branchline_followup.application.recording import SOURCE, FollowupContext, normalised
from branchline_followup.application.recording import _sealed as sealed_payload
from branchline_followup.domain.records import SealedValue
from branchline_followup.domain.vocabulary import TaskKind
from branchline_shared.crypto.keystore import KeyDestroyed
from branchline_shared.crypto.sealing import DataKey, SealingError, unseal
from branchline_shared.events.catalogue import (
    CATALOGUE_VERSION,
    ClientPersonalDataAccessed,
    EventType,
    StaffPersonalDataAccessed,
)
from branchline_shared.events.envelope import Actor, RecordedEvent
from branchline_shared.events.sealing_keys import staff_key_id
from branchline_shared.events.typed import decode
from branchline_shared.events.vocabulary import PersonalField
from branchline_shared.kafka.wire import SourcePosition

PERSONAL_DATA_ACCESSED = EventType.CLIENT_PERSONAL_DATA_ACCESSED.value
STAFF_PERSONAL_DATA_ACCESSED = EventType.STAFF_PERSONAL_DATA_ACCESSED.value
STAFF_TEXTS_GONE = (
    "revocation reasons, training topics, declared interests, gift descriptions, the erasure "
    "request's reason"
)
"""What a member of staff's shredding destroyed (their texts; their records stay)."""
STRUCTURED_PATH = "fields"
"""The payload key of ``client.personal_data_recorded`` whose sub-keys are PersonalFields."""


class PersonalDataRefused(Exception):
    """Base of the refusals of an access request."""

    def __init__(self, client_id: str, detail: str) -> None:
        super().__init__(detail)
        self.client_id = client_id
        self.detail = detail


class ClientUnknown(PersonalDataRefused):
    def __init__(self, client_id: str) -> None:
        super().__init__(client_id, f"no client {client_id!r} in the read model")


class PersonalDataRestricted(PersonalDataRefused):
    def __init__(self, client_id: str, since: datetime) -> None:
        super().__init__(
            client_id,
            f"the client asked for erasure at {since.isoformat()}: their personal data is "
            "restricted and shown to nobody until it is destroyed (D-04)",
        )


class PersonalDataShredded(PersonalDataRefused):
    def __init__(self, client_id: str) -> None:
        super().__init__(
            client_id,
            "the client's personal data was destroyed (crypto-shredded, D-04): nothing is left "
            "to show",
        )


class StaffUnknown(PersonalDataRefused):
    def __init__(self, staff_id: str) -> None:
        super().__init__(staff_id, f"no member of staff {staff_id!r} in the read model")


class StaffDataRestricted(PersonalDataRestricted):
    def __init__(self, staff_id: str, since: datetime) -> None:
        PersonalDataRefused.__init__(
            self,
            staff_id,
            f"the member of staff asked for erasure at {since.isoformat()}: their own texts "
            "are restricted and shown to nobody until they are destroyed (D-04)",
        )


class StaffDataShredded(PersonalDataShredded):
    def __init__(self, staff_id: str, at: datetime | None) -> None:
        when = "" if at is None else f" at {at.isoformat()}"
        PersonalDataRefused.__init__(
            self,
            staff_id,
            f"the member of staff's own texts ({STAFF_TEXTS_GONE}) were destroyed{when} "
            "(crypto-shredded, D-04): nothing of them is left to show. Their records "
            "(qualifications, training hours, declared products, gift values and givers) are "
            "the institution's and stay, without text",
        )


@dataclass(frozen=True)
class ShownValue:
    value: str
    source: SealedValue

    @property
    def personal_field(self) -> str | None:
        if self.source.path == STRUCTURED_PATH and self.source.sub_key:
            return self.source.sub_key
        return None


@dataclass(frozen=True)
class PersonalDataCopy:
    client_id: str
    purpose: str
    generated_at: datetime
    access_event_id: uuid.UUID
    request_event_id: uuid.UUID | None
    values: list[ShownValue]

    def current_fields(self) -> dict[str, ShownValue]:
        """The latest value of each structured personal field."""
        latest: dict[str, ShownValue] = {}
        for shown in self.values:  # in time order: later ones win
            if shown.personal_field is not None:
                latest[shown.personal_field] = shown
        return latest


def privacy_stream_id(client_id: str) -> str:
    """Followup's stream of a client's personal-data facts (accesses, shredding)."""
    return f"privacy-{client_id}"


def staff_privacy_stream_id(staff_id: str) -> str:
    """Followup's stream of a member of staff's personal-data facts (their shredding); the
    "/" keeps it apart from every client's (no identifier holds one)."""
    return f"privacy-staff/{staff_id}"


async def record_privacy_event(
    uow: FollowupUnitOfWork,
    ctx: FollowupContext,
    *,
    event_type: str,
    client_id: str | None,
    branch_id: str | None,
    occurred_at: datetime,
    actor: Actor,
    data: dict[str, Any],
    event_id: uuid.UUID | None = None,
    staff_id: str | None = None,
) -> RecordedEvent:
    """Append a personal-data fact to its data subject's privacy stream (a client's, or with
    ``staff_id`` a member of staff's) with its outbox row and apply it, in the caller's unit of
    work; an id already stored is not appended again."""
    event_id = event_id or uuid.uuid4()
    existing = await uow.events.find([event_id])
    if event_id in existing:
        event = existing[event_id].event
        global_position = existing[event_id].position.global_position
    else:
        if staff_id is not None:
            stream, key_id = staff_privacy_stream_id(staff_id), staff_key_id(staff_id)
        elif client_id is not None:
            stream, key_id = privacy_stream_id(client_id), client_id
        else:
            raise ValueError("a privacy fact names its data subject: a client or staff")
        versions = await uow.events.lock_streams([stream])
        event = RecordedEvent(
            event_id=event_id,
            type=event_type,
            schema_version=CATALOGUE_VERSION[event_type],
            occurred_at=occurred_at,
            recorded_at=ctx.clock.system_now(),
            source=SOURCE,
            actor=actor,
            client_id=None if staff_id is not None else client_id,
            staff_id=staff_id,
            branch_id=branch_id,
            stream_id=stream,
            stream_version=versions.get(stream, 0) + 1,
            # Personal values of the fact itself (e.g. a stated purpose naming the client) are
            # sealed like every other (ADR-0007).
            data=await sealed_payload(ctx, event_type, key_id, normalised(event_type, data)),
        )
        (stored,) = await uow.events.append([event], topic=ctx.topic)
        global_position = stored.global_position
    # With its place in followup's store, as a rebuild applies it (reconcile, and the source
    # order a client is projected again in, #13).
    # decoded here, where this process received it (what it just recorded, or found stored)
    await project(uow, decode(event), ctx.projection, SourcePosition(SOURCE, global_position))
    return event


def _opened(values: list[SealedValue], key: DataKey, client_id: str) -> list[ShownValue]:
    shown: list[ShownValue] = []
    for value in values:
        try:
            clear = unseal(
                value.sealed, key, client_id=client_id, path=value.path, sub_key=value.sub_key
            )
        except SealingError:
            # Sealed under a key the client no longer has: unreadable, so not shown (and never
            # echoed: the error names no value).
            continue
        shown.append(ShownValue(clear, value))
    return shown


async def answer_access_request(
    ctx: FollowupContext, client_id: str, *, purpose: str, actor: Actor
) -> PersonalDataCopy:
    """The client's personal data in clear (D-04), recorded as accessed; closes the oldest open
    access-request task of the client."""
    if ctx.keys is None:
        raise RuntimeError("answering an access request needs the key store")
    now = await ctx.clock.now()
    async with ctx.units.begin() as uow:
        facts = await uow.clients.get(client_id)
        if facts is None:
            raise ClientUnknown(client_id)
        await uow.lock_client(client_id)
        state = await uow.privacy.state(client_id)
        if state is not None and state.shredded:
            raise PersonalDataShredded(client_id)
        if state is not None and state.erasure_requested_at is not None:
            raise PersonalDataRestricted(client_id, state.erasure_requested_at)
        try:
            key = await ctx.keys.existing_key(client_id)
        except KeyDestroyed:
            raise PersonalDataShredded(client_id) from None
        shown = await _shown(uow, key, client_id)
        request_id = await _answered_request(uow, client_id)
        fields = sorted(
            {PersonalField(s.personal_field) for s in shown if s.personal_field is not None}
        )
        texts = sorted(
            {f"{s.source.event_type}/{s.source.path}" for s in shown if s.personal_field is None}
        )
        data = ClientPersonalDataAccessed(
            fields=tuple(fields),
            purpose=purpose,
            texts=tuple(texts),
            request_event_id=request_id,
        ).model_dump(mode="json", exclude_none=True)
        event = await record_privacy_event(
            uow,
            ctx,
            event_type=PERSONAL_DATA_ACCESSED,
            client_id=client_id,
            branch_id=facts.branch_id,
            occurred_at=now,
            actor=actor,
            data=data,
        )
    return PersonalDataCopy(
        client_id=client_id,
        purpose=purpose,
        generated_at=now,
        access_event_id=event.event_id,
        request_event_id=request_id,
        values=shown,
    )


async def _shown(uow: FollowupUnitOfWork, key: DataKey | None, key_id: str) -> list[ShownValue]:
    """The subject's sealed values held here, opened with their key (none without one)."""
    sealed = await uow.privacy.values(key_id)
    return _opened(sealed, key, key_id) if key is not None else []


async def _answered_request(uow: FollowupUnitOfWork, key_id: str) -> uuid.UUID | None:
    """The access request an answer closes: the subject's oldest open one, if any."""
    requests = [
        t for t in await uow.tasks.open_of(key_id) if t.kind is TaskKind.DATA_ACCESS_REQUEST
    ]
    return requests[0].source_event_id if requests else None


@dataclass(frozen=True)
class StaffDataCopy:
    staff_id: str
    purpose: str
    generated_at: datetime
    access_event_id: uuid.UUID
    request_event_id: uuid.UUID | None
    values: list[ShownValue]


async def answer_staff_access_request(
    ctx: FollowupContext, staff_id: str, *, purpose: str, actor: Actor
) -> StaffDataCopy:
    """A member of staff's own texts in clear (D-04), recorded as accessed
    (``staff.personal_data_accessed`` on their privacy stream); closes the oldest open access
    request of theirs. Restricted after their erasure request, gone after its shredding."""
    if ctx.keys is None:
        raise RuntimeError("answering an access request needs the key store")
    now = await ctx.clock.now()
    key_id = staff_key_id(staff_id)
    async with ctx.units.begin() as uow:
        member = await uow.privacy.staff_member(staff_id)
        if member is None:
            raise StaffUnknown(staff_id)
        await uow.lock_client(key_id)
        state = await uow.privacy.staff_state(staff_id)
        if state is not None and state.shredded:
            raise StaffDataShredded(staff_id, state.shredded_at)
        if state is not None:
            raise StaffDataRestricted(staff_id, state.erasure_requested_at)
        try:
            key = await ctx.keys.existing_key(key_id)
        except KeyDestroyed:
            raise StaffDataShredded(staff_id, None) from None
        shown = await _shown(uow, key, key_id)
        request_id = await _answered_request(uow, key_id)
        data = StaffPersonalDataAccessed(
            purpose=purpose,
            texts=tuple(sorted({f"{s.source.event_type}/{s.source.path}" for s in shown})),
            request_event_id=request_id,
        ).model_dump(mode="json", exclude_none=True)
        event = await record_privacy_event(
            uow,
            ctx,
            event_type=STAFF_PERSONAL_DATA_ACCESSED,
            client_id=None,
            staff_id=staff_id,
            branch_id=member.branch_id,
            occurred_at=now,
            actor=actor,
            data=data,
        )
    return StaffDataCopy(
        staff_id=staff_id,
        purpose=purpose,
        generated_at=now,
        access_event_id=event.event_id,
        request_event_id=request_id,
        values=shown,
    )
