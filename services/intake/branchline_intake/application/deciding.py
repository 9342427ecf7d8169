"""The seam between the write path and the rules of the standard.

A :class:`Decider` sees a client's history and one candidate event and answers with the event
to append (possibly enriched, e.g. a sale's as-of proof) or a violation carrying the rule id
(``branchline_intake.domain.RuleViolation``). It is pure: the same decider runs wherever the
rules are needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from branchline_shared.events.catalogue import EventPayload
from branchline_shared.events.envelope import RecordedEvent, SubmittedEvent


class Violation(Protocol):
    @property
    def rule(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def detail(self) -> str: ...
    @property
    def field(self) -> str | None: ...


class Decider(Protocol):
    def __call__(
        self,
        history: Sequence[RecordedEvent],
        candidate: RecordedEvent,
        related: Mapping[str, Sequence[RecordedEvent]] = ...,
        *,
        payload: EventPayload | None = ...,
    ) -> RecordedEvent | Violation:
        """``history``: the stream of the candidate's subject; ``related``: the histories of
        the streams :meth:`references` named (read in the same transaction); ``payload``: the
        candidate's payload as the catalogue validated it (``candidate.data`` is its dump),
        so the decider need not parse it again (#12)."""

    def references(self, candidate: RecordedEvent | SubmittedEvent) -> Sequence[str]:
        """The other streams whose history deciding ``candidate`` needs (the product shelf,
        the acting staff's records), read-locked so the decision is consistent."""
