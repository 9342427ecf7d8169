"""Carrying out erasure (D-04, D-11): destroy the data key of every client whose erasure is
due, and record it (``client.personal_data_shredded``, through followup's outbox, so the audit
trail shows every entry of the client as shredded while its hashes still verify); the same for
every member of staff whose erasure is due (their key ``#staff/<id>``,
``staff.personal_data_shredded``).

Run by the worker on a schedule and by ``branchline privacy shred-due``; safe to run twice at
once (the client's lock) and to re-run after a crash (the event id is derived from the
client, the key destruction is idempotent).
"""

from __future__ import annotations

import uuid
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from datetime import datetime

from branchline_followup.application.personal_data import record_privacy_event
from branchline_followup.application.ports import LegalHolds
from branchline_followup.application.recording import FollowupContext
from branchline_followup.domain.erasure import (
    ErasureCase,
    RetentionRule,
    ShredPlan,
    StaffErasureCase,
    relationship_ended_at,
    shred_plan,
    staff_held,
    staff_hold_subjects,
    staff_shred_plan,
)
from branchline_followup.domain.records import StaffPrivacyState
from branchline_shared.crypto.keystore import ClientKeyStore
from branchline_shared.events.catalogue import (
    ClientPersonalDataShredded,
    EventType,
    StaffPersonalDataShredded,
)
from branchline_shared.events.envelope import Actor
from branchline_shared.events.sealing_keys import staff_key_id
from branchline_shared.settings import FollowupSettings

PERSONAL_DATA_SHREDDED = EventType.CLIENT_PERSONAL_DATA_SHREDDED.value
STAFF_PERSONAL_DATA_SHREDDED = EventType.STAFF_PERSONAL_DATA_SHREDDED.value
SHREDDER = Actor(id="privacy-shredder", role="system")
SHRED_NAMESPACE = uuid.UUID("b6f4c0de-5a7e-5d1c-9e2b-8f3a4d6c1e70")
"""UUID v5 namespace of the shredding event of a client (fixed forever: one per client)."""


def retention_rule_from_settings(settings: FollowupSettings) -> RetentionRule:
    """The institution's D-11 retention (the same settings the audit trail prunes by)."""
    return RetentionRule(
        years_by_profile=dict(settings.retention_years),
        default_profile=settings.retention_profile,
        branch_profiles=dict(settings.retention_branch_profiles),
        legal_holds=frozenset(settings.retention_legal_hold_clients),
    )


@dataclass(frozen=True)
class ErasureStatus:
    """One data subject with an erasure request not yet carried out, and what is planned."""

    client_id: str
    """The client's id, or a member of staff's key id ``#staff/<staff_id>``."""
    erasure_requested_at: datetime
    plan: ShredPlan | None
    shredded: bool = False
    held: bool = False
    """Under a standing legal hold (D-11): not destroyed while it stands."""
    key_id: str | None = None
    event_id: uuid.UUID | None = None


def shred_event_id(client_id: str) -> uuid.UUID:
    """The id of the shredding event of a client, or of a member of staff by their key id
    (``#`` begins no client id, so the two never meet)."""
    return uuid.uuid5(SHRED_NAMESPACE, client_id)


async def _pending_cases(ctx: FollowupContext, now: datetime) -> list[ErasureCase]:
    policy = ctx.projection.policy
    cases: list[ErasureCase] = []
    async with ctx.units.begin() as uow:
        for pending in await uow.privacy.pending_erasures():
            # pending: an erasure was asked (both are written together)
            assert pending.erasure_requested_at is not None
            assert pending.erasure_event_id is not None
            facts = await uow.clients.get(pending.client_id)
            cases.append(
                ErasureCase(
                    client_id=pending.client_id,
                    branch_id=facts.branch_id if facts else None,
                    erasure_event_id=pending.erasure_event_id,
                    erasure_requested_at=pending.erasure_requested_at,
                    had_business=facts is not None and facts.first_business_at is not None,
                    relationship_ended_at=relationship_ended_at(
                        account_closed_at=facts.account_closed_at if facts else None,
                        first_business_at=facts.first_business_at if facts else None,
                        last_business_at=facts.last_business_at if facts else None,
                        churn_after_inactivity=policy.churn_after_inactivity,
                        now=now,
                    ),
                )
            )
    return cases


async def shred_due(
    ctx: FollowupContext,
    keys: ClientKeyStore,
    rule: RetentionRule,
    holds: LegalHolds,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
) -> list[ErasureStatus]:
    """Every pending erasure with its plan; those due by ``now`` carried out (unless
    ``dry_run``) once the standing legal holds are known (:class:`LegalHoldsUnknown`: nothing
    is destroyed). Also registers every pending client as restricted in the key store
    (repairs a restriction intake could not register)."""
    now = now or await ctx.clock.now()
    cases = await _pending_cases(ctx, now)
    plans = {c.client_id: shred_plan(c, rule) for c in cases}
    due = [c.client_id for c in cases if (p := plans[c.client_id]) and p.due_at <= now]
    staff = await _pending_staff(ctx)
    staff_due = [
        s
        for s in staff
        if (p := staff_shred_plan(_staff_case(s), rule)) is not None and p.due_at <= now
    ]
    # a member of staff is held by a hold on them, or on a client their gifts name (D-11, D-16)
    asked = sorted(
        {*due, *(c for s in staff_due for c in staff_hold_subjects(s.staff_id, s.gift_clients))}
    )
    held = await holds.held(asked) if asked else set()
    statuses: list[ErasureStatus] = []
    for case in cases:
        if case.client_id in held:
            case = replace(case, legal_hold=True)
            plans[case.client_id] = shred_plan(case, rule)
        plan = plans[case.client_id]
        if not dry_run:
            await keys.restrict(
                case.client_id,
                at=case.erasure_requested_at,
                source_event_id=case.erasure_event_id,
            )
        if plan is None or plan.due_at > now or dry_run:
            statuses.append(
                ErasureStatus(case.client_id, case.erasure_requested_at, plan, held=case.legal_hold)
            )
            continue
        key_id, event_id = await _shred(ctx, keys, case, plan, now)
        statuses.append(
            ErasureStatus(
                case.client_id,
                case.erasure_requested_at,
                plan,
                shredded=True,
                key_id=key_id,
                event_id=event_id,
            )
        )
    for state in staff:
        statuses.append(
            await _staff_erasure(
                ctx, keys, _staff_case(state, held | rule.legal_holds), rule, now, dry_run
            )
        )
    return statuses


async def _pending_staff(ctx: FollowupContext) -> list[StaffPrivacyState]:
    async with ctx.units.begin() as uow:
        return await uow.privacy.pending_staff_erasures()


def _staff_case(state: StaffPrivacyState, held: AbstractSet[str] = frozenset()) -> StaffErasureCase:
    return StaffErasureCase(
        staff_id=state.staff_id,
        branch_id=state.branch_id,
        erasure_event_id=state.erasure_event_id,
        erasure_requested_at=state.erasure_requested_at,
        employment_ended_at=state.employment_ended_at,
        legal_hold=staff_held(state.staff_id, state.gift_clients, held),
    )


async def _staff_erasure(
    ctx: FollowupContext,
    keys: ClientKeyStore,
    case: StaffErasureCase,
    rule: RetentionRule,
    now: datetime,
    dry_run: bool,
) -> ErasureStatus:
    """One member of staff's erasure: their restriction registered (repairs one intake could
    not register), their key destroyed and the fact recorded when it is due."""
    key_id = staff_key_id(case.staff_id)
    plan = staff_shred_plan(case, rule)
    if not dry_run:
        await keys.restrict(
            key_id, at=case.erasure_requested_at, source_event_id=case.erasure_event_id
        )
    if plan is None or plan.due_at > now or dry_run:
        return ErasureStatus(key_id, case.erasure_requested_at, plan, held=case.legal_hold)
    async with ctx.units.begin() as uow:
        await uow.lock_client(key_id)
        # as for a client: the key first, inside the transaction that records it
        destroyed = await keys.destroy(key_id)
        data = StaffPersonalDataShredded(
            basis=plan.basis,
            erasure_event_id=case.erasure_event_id,
            key_id=destroyed,
            employment_ended_at=case.employment_ended_at,
            retention_until=plan.retention_until,
        ).model_dump(mode="json", exclude_none=True)
        event = await record_privacy_event(
            uow,
            ctx,
            event_type=STAFF_PERSONAL_DATA_SHREDDED,
            client_id=None,
            staff_id=case.staff_id,
            branch_id=case.branch_id,
            occurred_at=now,
            actor=SHREDDER,
            data=data,
            event_id=shred_event_id(key_id),
        )
    return ErasureStatus(
        key_id,
        case.erasure_requested_at,
        plan,
        shredded=True,
        key_id=destroyed,
        event_id=event.event_id,
    )


async def _shred(
    ctx: FollowupContext,
    keys: ClientKeyStore,
    case: ErasureCase,
    plan: ShredPlan,
    now: datetime,
) -> tuple[str | None, uuid.UUID]:
    async with ctx.units.begin() as uow:
        await uow.lock_client(case.client_id)
        # The key goes first, inside the transaction that records it: should the commit fail,
        # the next run finds the client pending, destroys again (idempotent) and records it.
        key_id = await keys.destroy(case.client_id)
        facts = await uow.clients.get(case.client_id)
        data = ClientPersonalDataShredded(
            basis=plan.basis,
            erasure_event_id=case.erasure_event_id,
            key_id=key_id,
            relationship_ended_at=case.relationship_ended_at,
            retention_until=plan.retention_until,
        ).model_dump(mode="json", exclude_none=True)
        event = await record_privacy_event(
            uow,
            ctx,
            event_type=PERSONAL_DATA_SHREDDED,
            client_id=case.client_id,
            branch_id=facts.branch_id if facts else case.branch_id,
            occurred_at=now,
            actor=SHREDDER,
            data=data,
            event_id=shred_event_id(case.client_id),
        )
    return key_id, event.event_id
