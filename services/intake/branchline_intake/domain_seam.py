"""Chooses the decider that enforces the standard on the write path."""

from __future__ import annotations

from branchline_intake.application.deciding import Decider
from branchline_intake.domain import IntakePolicy, RecordedDecider
from branchline_shared.settings import BranchlineSettings


def build_decider(settings: BranchlineSettings) -> Decider:
    return RecordedDecider(IntakePolicy())
