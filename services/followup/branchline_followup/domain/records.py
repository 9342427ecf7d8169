"""Rows of the read models that the use cases read back to decide: a client's D-09 facts, a
due durable timer, a sealed personal value and a client's privacy state. Plain values, so the
application's ports (``application/ports.py``) can name them without naming a database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from branchline_shared.domain.classification import (
    LifecycleFacts,
    LifecycleThresholds,
    stage_and_next_change,
)
from branchline_shared.events.vocabulary import LifecycleStage


@dataclass
class ClientFacts:
    """One client as followup keeps it (the D-09 facts and what the 360 view shows)."""

    client_id: str
    client_type: str
    rm_id: str
    branch_id: str | None
    lifecycle_stage: str
    registered_at: datetime
    last_event_at: datetime
    last_contact_at: datetime | None = None
    risk_tolerance: str | None = None
    risk_level: str | None = None
    identity_verified_at: datetime | None = None
    first_business_at: datetime | None = None
    last_business_at: datetime | None = None
    assets_under_management: Decimal = Decimal(0)
    account_closed_at: datetime | None = None
    stage_as_of: datetime | None = None
    """The instant ``lifecycle_stage`` holds for (``None``: as of ``last_event_at``)."""
    stage_changes_at: datetime | None = None
    """The next instant the stage changes by time alone: the client's durable stage timer."""
    last_business_event_id: uuid.UUID | None = None
    """The event of ``last_business_at`` (the cause of a stage change by time)."""

    def lifecycle(self) -> LifecycleFacts:
        """The facts D-09's stage depends on."""
        return LifecycleFacts(
            registered_at=self.registered_at,
            identity_verified_at=self.identity_verified_at,
            first_business_at=self.first_business_at,
            last_business_at=self.last_business_at,
            assets_under_management=self.assets_under_management,
            account_closed_at=self.account_closed_at,
        )

    def stage_at(
        self, at: datetime, policy: LifecycleThresholds
    ) -> tuple[LifecycleStage, datetime | None]:
        """D-09: the stage at ``at`` and the next instant it changes by time alone (``None``:
        only an event can change it), as :func:`lifecycle_stage` and
        :func:`next_stage_change_at` give them.

        A client not onboarded (identity verified *and* first business) whose account is not
        closed is a prospect at every instant, and none of the candidate instants changes that
        (none is onboarding or closure), whatever the policy: every new client of a batch of
        registrations, answered without building the facts and trying each instant (#12)."""
        if self.account_closed_at is None and (
            self.identity_verified_at is None or self.first_business_at is None
        ):
            return LifecycleStage.PROSPECT, None
        # the facts built once and the stage at ``at`` computed once for both answers (#12)
        return stage_and_next_change(self.lifecycle(), at, policy)


@dataclass(frozen=True)
class DueTimer:
    """A durable timer whose instant has come, claimed by one runner (ADR-0008)."""

    id: uuid.UUID
    task_id: uuid.UUID
    client_id: str
    kind: str
    fire_at: datetime


@dataclass(frozen=True)
class SealedValue:
    """One sealed personal value and where it came from (D-04)."""

    event_id: uuid.UUID
    event_type: str
    path: str
    sub_key: str
    sealed: str
    occurred_at: datetime


@dataclass(frozen=True)
class PrivacyState:
    client_id: str
    erasure_requested_at: datetime | None
    erasure_event_id: uuid.UUID | None
    shredded_at: datetime | None
    shred_event_id: uuid.UUID | None

    @property
    def restricted(self) -> bool:
        return self.erasure_requested_at is not None

    @property
    def shredded(self) -> bool:
        return self.shredded_at is not None


@dataclass(frozen=True)
class StaffMember:
    """A member of staff followup knows from their staff events (D-14, D-16)."""

    staff_id: str
    branch_id: str | None


@dataclass(frozen=True)
class StaffPrivacyState:
    """A member of staff's erasure (D-04): their own texts restricted from the request on,
    shredded once their key is gone."""

    staff_id: str
    erasure_requested_at: datetime
    erasure_event_id: uuid.UUID
    employment_ended_at: datetime | None
    shredded_at: datetime | None = None
    shred_event_id: uuid.UUID | None = None
    branch_id: str | None = None
    """The branch of their records (its retention profile, D-11)."""
    gift_clients: tuple[str, ...] = ()
    """The clients their gift records name: a legal hold on one holds these records too."""

    @property
    def shredded(self) -> bool:
        return self.shredded_at is not None
