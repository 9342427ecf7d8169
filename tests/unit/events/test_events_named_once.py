"""Event types are named once (issue #9): the catalogue's ``EventType`` holds every type string;
the services and the CLI name types through it, never as string literals; and every type the
code emits or reacts to is in the catalogue with a published schema."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from branchline_audit.domain import personal as audit_personal
from branchline_audit.domain import relationships as audit_relationships
from branchline_followup.application import shredding as followup_shredding
from branchline_followup.application import task_creations
from branchline_followup.application.personal_data import PERSONAL_DATA_ACCESSED
from branchline_followup.domain import FOLLOWUP_ESCALATED, FOLLOWUP_OVERDUE, HANDLED_EVENT_TYPES
from branchline_followup.domain.rules import FOLLOWUP_COMPLETED
from branchline_intake.application.privacy import ERASURE_REQUESTED
from branchline_intake.application.submit import REFUSAL_TYPE
from branchline_shared.access import reads
from branchline_shared.domain.classification import BUSINESS_EVENT_TYPES
from branchline_shared.events.catalogue import PAYLOAD_MODELS, EventType

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[3]
SCANNED = ("services", "cli", "shared/branchline_shared")
NAMING_PLACES = {
    # the one place each type string is written
    Path("shared/branchline_shared/events/catalogue/event_types.py"),
    # the example journey, keyed by type as the published documents show them
    Path("cli/branchline_cli/example_journey.py"),
}


def _literals_naming_a_type(path: Path, root: Path = ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        f"{path.relative_to(root)}:{node.lineno}: {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value in PAYLOAD_MODELS
    ]


def test_no_source_writes_an_event_type_as_a_string_literal() -> None:
    offenders: list[str] = []
    scanned = 0
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*.py")):
            if path.relative_to(ROOT) in NAMING_PLACES:
                continue
            scanned += 1
            offenders.extend(_literals_naming_a_type(path))
    assert scanned > 100  # the scan saw the code, not an empty tree
    assert offenders == [], "name event types through EventType:\n" + "\n".join(offenders)


def test_the_scan_finds_a_literal_and_only_whole_ones(tmp_path: Path) -> None:
    sample = tmp_path / "probe.py"
    sample.write_text(
        '"""Docs may say visit.closed."""\nKIND = "visit.closed"\nPREFIX = "visit."\n',
        encoding="utf-8",
    )
    assert _literals_naming_a_type(sample, tmp_path) == ["probe.py:2: 'visit.closed'"]


def test_every_type_string_is_a_catalogue_type_and_back() -> None:
    assert {t.value for t in EventType} == set(PAYLOAD_MODELS)


EMITTED = {
    "followup.task_created": task_creations.TASK_CREATED,
    "followup.completed": FOLLOWUP_COMPLETED,
    "followup.overdue": FOLLOWUP_OVERDUE,
    "followup.escalated": FOLLOWUP_ESCALATED,
    "followup: client.personal_data_accessed": PERSONAL_DATA_ACCESSED,
    "followup: client.personal_data_shredded": followup_shredding.PERSONAL_DATA_SHREDDED,
    "followup, intake: client.data_read": reads.READ_EVENT_TYPE,
    "intake: rule.violation_refused": REFUSAL_TYPE,
    "intake: client.erasure_requested": ERASURE_REQUESTED,
    "audit: legal hold placed": audit_relationships.HOLD_PLACED,
    "audit: legal hold lifted": audit_relationships.HOLD_LIFTED,
}


@pytest.mark.parametrize("event_type", sorted(HANDLED_EVENT_TYPES | BUSINESS_EVENT_TYPES))
def test_every_type_followup_reacts_to_has_a_model_and_a_schema(event_type: str) -> None:
    _has_model_and_schema(event_type)


@pytest.mark.parametrize(("what", "event_type"), sorted(EMITTED.items()))
def test_every_type_the_services_emit_has_a_model_and_a_schema(what: str, event_type: str) -> None:
    _has_model_and_schema(event_type)


@pytest.mark.parametrize(
    "event_type",
    sorted({audit_personal.ERASURE_REQUESTED, audit_personal.PERSONAL_DATA_SHREDDED}),
)
def test_every_type_audit_reacts_to_has_a_model_and_a_schema(event_type: str) -> None:
    _has_model_and_schema(event_type)


def _has_model_and_schema(event_type: str) -> None:
    assert event_type in PAYLOAD_MODELS, f"{event_type} is not in the catalogue"
    model = PAYLOAD_MODELS[event_type]
    schema = ROOT / "schemas" / "events" / event_type / f"v{model.SCHEMA_VERSION}.json"
    assert schema.is_file(), f"{event_type} has no published schema {schema.relative_to(ROOT)}"
