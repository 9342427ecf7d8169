"""KYC refresh (D-03): due diligence is refreshed periodically, by risk level.

An identity verification by a method that counts (:attr:`FollowupPolicy.kyc_verification_methods`,
default ``networked_id_check``, as intake's gate) is due diligence done: it completes the
client's open ``kyc_refresh`` task and opens the next one, due so many months later as the
client's D-09 risk level says (default: 12 for high and very high risk, 36 otherwise, also for
a client not assessed yet). A reassessment that changes the risk level re-times the open
task from the same verification (its ``opened_at``): a client who became high risk is due
sooner. Account closure cancels it (:mod:`.service_loop`).

Pure: the event, the client and their open tasks in, task commands out.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from branchline_followup.domain.business_days import require_aware
from branchline_followup.domain.opening import (
    complete,
    open_for_event,
    open_of,
    owner,
    reschedule,
)
from branchline_followup.domain.payloads import read_payload
from branchline_followup.domain.policy import FollowupPolicy
from branchline_followup.domain.tasks import (
    ClientContext,
    FollowupTask,
    TaskCommand,
)
from branchline_followup.domain.vocabulary import TaskKind, TaskRule
from branchline_shared.domain.classification import risk_level
from branchline_shared.events import catalogue as c
from branchline_shared.events.typed import Decoded

IDENTITY_VERIFIED = c.EventType.CLIENT_IDENTITY_VERIFIED.value
RISK_ASSESSED = c.EventType.CLIENT_RISK_ASSESSED.value
KYC_SUBJECT = "due_diligence"


def add_months(moment: datetime, months: int) -> datetime:
    """``moment`` so many calendar months later (the 31st becomes the month's last day)."""
    moment = require_aware(moment, "moment")
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def refresh_due(verified_at: datetime, risk_level: str | None, policy: FollowupPolicy) -> datetime:
    """D-03: when due diligence done at ``verified_at`` must be refreshed at ``risk_level``."""
    return add_months(verified_at, policy.kyc_refresh_months_for(risk_level))


class KycRefreshRule:
    """D-03 KYC refresh (module docstring)."""

    rule: ClassVar[TaskRule] = TaskRule.DUE_DILIGENCE
    event_types: ClassVar[frozenset[str]] = frozenset({IDENTITY_VERIFIED, RISK_ASSESSED})

    def decide(
        self,
        typed: Decoded,
        client: ClientContext,
        open_tasks: Sequence[FollowupTask],
        policy: FollowupPolicy,
    ) -> list[TaskCommand]:
        event = typed.envelope
        refreshes = open_of(open_tasks, {TaskKind.KYC_REFRESH})
        if event.type == RISK_ASSESSED:
            assessed = read_payload(typed, c.ClientRiskAssessed, self.rule)
            risk = risk_level(assessed.level)  # D-09, the one table
            level = None if risk is None else risk.value
            return reschedule(
                refreshes,
                lambda t: refresh_due(t.opened_at, level, policy),
                cause_event_id=event.event_id,
                reason=f"risk level {level}",
            )
        verified = read_payload(typed, c.ClientIdentityVerified, self.rule)
        if verified.method.value not in policy.kyc_verification_methods:
            return []  # recorded, but not due diligence that counts (D-03)
        commands = complete(refreshes, event, "due diligence refreshed")
        commands.append(
            open_for_event(
                event,
                policy,
                kind=TaskKind.KYC_REFRESH,
                subject=KYC_SUBJECT,
                assignee=owner(client, policy),
                due_at=refresh_due(event.occurred_at, client.risk_level, policy),
            )
        )
        return commands
