"""Consultation events (D-06, D-17)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import (
    StrictBool,
    model_validator,
)

from branchline_shared.events.bounded import Instant
from branchline_shared.events.catalogue.base import (
    ConsultationEvent,
)
from branchline_shared.events.catalogue.checks import client_was_told
from branchline_shared.events.catalogue.scalars import (
    Note,
    Text,
)
from branchline_shared.events.envelope import Channel
from branchline_shared.events.vocabulary import (
    RenegotiationReason,
)


class ConsultationOpened(ConsultationEvent):
    """consultation.opened (D-06): online ones are answered within 30 seconds."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("question",)

    channel: Channel
    question: Text


class ConsultationAnswered(ConsultationEvent):
    """consultation.answered (D-06): an answer, or a promised deadline (and follow-up channel)
    for a question that cannot be answered at once; a promise is followed by an answer."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("answer",)

    answer: Text | None = None
    promised_by: Instant | None = None
    follow_up_channel: Channel | None = None

    @model_validator(mode="after")
    def _answer_or_promise(self) -> ConsultationAnswered:
        if self.answer is None and self.promised_by is None:
            raise ValueError("either answer or promised_by is required")
        return self


class ConsultationPromiseRenegotiated(ConsultationEvent):
    """consultation.promise_renegotiated (D-17): the promised answer cannot be given by its
    deadline; before the deadline passes the client is told, with a reason and an alternative,
    and a new deadline ``promised_by`` is agreed."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("alternative",)

    promised_by: Instant
    reason: RenegotiationReason
    alternative: Note
    client_told: StrictBool
    told_via: Channel | None = None

    _told = client_was_told()
