"""Carrying out erasure (D-04, D-11): destroy the data key of every client whose erasure is
due, and record it (``client.personal_data_shredded``, through followup's outbox, so the audit
trail shows every entry of the client as shredded while its hashes still verify).

Run by the worker on a schedule and by ``branchline privacy shred-due``; safe to run twice at
once (the client's lock) and to re-run after a crash (the event id is derived from the
client, the key destruction is idempotent).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime

from branchline_followup.application.personal_data import record_privacy_event
from branchline_followup.application.ports import LegalHolds
from branchline_followup.application.recording import FollowupContext
from branchline_followup.domain.erasure import (
    ErasureCase,
    RetentionRule,
    ShredPlan,
    relationship_ended_at,
    shred_plan,
)
from branchline_shared.crypto.keystore import ClientKeyStore
from branchline_shared.events.catalogue import ClientPersonalDataShredded, EventType
from branchline_shared.events.envelope import Actor
from branchline_shared.settings import FollowupSettings

PERSONAL_DATA_SHREDDED = EventType.CLIENT_PERSONAL_DATA_SHREDDED.value
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
    """One client with an erasure request not yet carried out, and what is planned."""

    client_id: str
    erasure_requested_at: datetime
    plan: ShredPlan | None
    shredded: bool = False
    held: bool = False
    """Under a standing legal hold (D-11): not destroyed while it stands."""
    key_id: str | None = None
    event_id: uuid.UUID | None = None


def shred_event_id(client_id: str) -> uuid.UUID:
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
    held = await holds.held(due) if due else set()
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
    return statuses


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
