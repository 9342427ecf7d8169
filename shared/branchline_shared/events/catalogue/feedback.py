"""Satisfaction surveys and feedback (D-01b, D-07, D-10, D-17)."""

from __future__ import annotations

import uuid
from typing import ClassVar

from branchline_shared.events.catalogue.base import (
    EventPayload,
    PayloadPart,
)
from branchline_shared.events.catalogue.scalars import (
    Note,
    Score,
    Text,
)
from branchline_shared.events.envelope import Channel, Identifier
from branchline_shared.events.vocabulary import (
    FeedbackKind,
    RootCause,
    SurveyChannel,
)


class SatisfactionScores(PayloadPart):
    """D-10: the five dimensions, each 0..100."""

    attitude: Score
    professionalism: Score
    response_speed: Score
    risk_management: Score
    convenience: Score


class FeedbackSurveyAnswered(EventPayload):
    """feedback.survey_answered (D-01b, D-10)."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("comment",)

    visit_id: Identifier | None = None
    scores: SatisfactionScores
    channel: SurveyChannel | None = None
    comment: Text | None = None


class FeedbackReceived(EventPayload):
    """feedback.received (D-07): feedback other than a survey or a complaint; it is responded
    to within 24 hours."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("comment",)

    kind: FeedbackKind
    comment: Text
    channel: SurveyChannel | None = None


class FeedbackResponded(EventPayload):
    """feedback.responded (D-07, D-17): the institution answered a piece of feedback
    (``responds_to_event_id``: the ``feedback.survey_answered`` or ``feedback.received``);
    optionally classified by root cause."""

    PERSONAL_PATHS: ClassVar[tuple[str, ...]] = ("note",)

    responds_to_event_id: uuid.UUID
    channel: Channel
    root_cause: RootCause | None = None
    note: Note | None = None
