"""The check of the committed ``schemas/`` folder against freshly generated files (CI:
``branchline schemas check``): drift, breaking changes, missing upcasters, stale versions."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

from branchline_cli.schema_tooling.compatibility import Change, compare_schemas
from branchline_shared.events.catalogue import CATALOGUE_VERSION
from branchline_shared.events.json_schema import ENVELOPE_PATH, EVENT_PATH, event_schema_path

# --- the check --------------------------------------------------------------------------------

ProblemKind = Literal["drift", "breaking", "missing-upcaster", "stale"]


@dataclass(frozen=True, slots=True)
class SchemaProblem:
    kind: ProblemKind
    path: str
    """A path inside ``schemas/``."""
    message: str

    def __str__(self) -> str:
        return f"[{self.kind}] {self.path}: {self.message}"


def check_schema_files(
    committed: Mapping[str, str],
    generated: Mapping[str, str],
    upcasters: Collection[tuple[str, int]],
    current: Mapping[str, int] = CATALOGUE_VERSION,
) -> list[SchemaProblem]:
    """What is wrong with the committed ``schemas/`` against freshly ``generated`` files.

    * ``breaking``: a committed schema would change in a way old documents may not pass (the
      model needs a new ``SCHEMA_VERSION``), or a committed event type left the catalogue;
    * ``missing-upcaster``: a type's version was bumped without an upcaster from each older
      committed version (``upcasters`` holds (type, from_version) pairs; ``current`` maps
      each type to its current version);
    * ``stale``: a committed version is newer than the model's (the version went backwards);
    * ``drift``: anything else differs: ``branchline schemas generate`` fixes it.
    """
    problems: list[SchemaProblem] = []
    committed_versions: dict[str, list[int]] = {}
    for path in committed:
        match = EVENT_PATH.match(path)
        if match:
            committed_versions.setdefault(match["type"], []).append(int(match["version"]))
    for event_type, versions in sorted(committed_versions.items()):
        latest = current.get(event_type)
        if latest is None:
            problems.append(
                SchemaProblem(
                    "breaking",
                    f"events/{event_type}/",
                    f"event type {event_type!r} has committed schemas but left the catalogue: "
                    "its stored events could no longer be read",
                )
            )
            continue
        for version in sorted(v for v in versions if v > latest):
            problems.append(
                SchemaProblem(
                    "stale",
                    event_schema_path(event_type, version),
                    f"committed v{version} is newer than the model's SCHEMA_VERSION "
                    f"{latest} of {event_type!r}",
                )
            )
        for version in range(min(versions), latest):
            if (event_type, version) not in upcasters:
                problems.append(
                    SchemaProblem(
                        "missing-upcaster",
                        event_schema_path(event_type, version),
                        f"{event_type!r} is at v{latest}: register an upcaster from "
                        f"v{version} to v{version + 1} in branchline_shared.events.upcasting",
                    )
                )
    for path, text in sorted(generated.items()):
        before = committed.get(path)
        if before == text:
            continue
        if before is None:
            problems.append(
                SchemaProblem("drift", path, "missing: run `branchline schemas generate`")
            )
            continue
        breaking = _breaking_changes(path, before, text)
        if breaking:
            event = EVENT_PATH.match(path)
            if event:
                version = int(event["version"])
                advice = (
                    f"a breaking change to {event['type']!r} v{version}: bump its "
                    f"SCHEMA_VERSION to {version + 1} and register an upcaster from v{version}"
                )
            else:
                advice = "a breaking change to the envelope: it needs new topics (.v2)"
            problems.append(
                SchemaProblem("breaking", path, advice + ": " + "; ".join(str(c) for c in breaking))
            )
        else:
            problems.append(
                SchemaProblem("drift", path, "out of date: run `branchline schemas generate`")
            )
    return problems


def _breaking_changes(path: str, before: str, after: str) -> tuple[Change, ...]:
    if path != ENVELOPE_PATH and not EVENT_PATH.match(path):
        return ()
    try:
        old = json.loads(before)
    except json.JSONDecodeError:
        return ()  # a mangled file is drift: regenerating it loses nothing
    return compare_schemas(old, json.loads(after)).breaking
