"""The JSON Schema of each event type's ``data`` and of the envelope (ADR-0004), from the models.

What services need at run time: intake serves these documents (``GET /v1/schemas``). Writing
and checking the committed ``schemas/`` folder (index, AsyncAPI document, compatibility) is
tooling: :mod:`branchline_cli.schema_tooling`.

* ``events/<type>/v<N>.json``: the JSON Schema (draft 2020-12) of the ``data`` of one event type
  at one schema version: the payload model's validation schema, i.e. what intake accepts.
  Only the model's current ``SCHEMA_VERSION`` can be generated; older files stay as committed.
* ``envelope.json``: the envelope on the wire (:class:`~.envelope.RecordedEvent`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from branchline_shared.events.catalogue import (
    CATALOGUE_VERSION,
    PAYLOAD_MODELS,
    PERSONAL_FIELDS,
)
from branchline_shared.events.envelope import RecordedEvent

__all__ = [
    "ENVELOPE_PATH",
    "EVENT_PATH",
    "JSON_SCHEMA_DIALECT",
    "SCHEMA_BASE",
    "PublishedSchema",
    "envelope_schema",
    "event_schema",
    "event_schema_id",
    "event_schema_path",
    "published_schemas",
]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_BASE = "https://branchline.dev/schemas/"
ENVELOPE_PATH = "envelope.json"
EVENT_PATH = re.compile(r"^events/(?P<type>[a-z0-9_.]+)/v(?P<version>[1-9][0-9]*)\.json$")
"""The path of an event schema inside ``schemas/``."""


def event_schema_path(event_type: str, version: int) -> str:
    """Path of one event schema inside ``schemas/`` (POSIX separators)."""
    return f"events/{event_type}/v{version}.json"


def event_schema_id(event_type: str, version: int) -> str:
    return SCHEMA_BASE + event_schema_path(event_type, version)


def event_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema of ``data`` of ``event_type`` at its current schema version.

    Raises KeyError for a type the catalogue lacks."""
    model = PAYLOAD_MODELS[event_type]
    version = model.SCHEMA_VERSION
    generated = model.model_json_schema(mode="validation")
    schema: dict[str, Any] = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": event_schema_id(event_type, version),
        "x-event-type": event_type,
        "x-schema-version": version,
        "x-personal-paths": list(PERSONAL_FIELDS[event_type]),
    }
    schema.update(generated)
    return schema


def envelope_schema() -> dict[str, Any]:
    """The JSON Schema of the envelope every event travels in (JSON on the wire)."""
    schema: dict[str, Any] = {"$schema": JSON_SCHEMA_DIALECT, "$id": SCHEMA_BASE + ENVELOPE_PATH}
    schema.update(RecordedEvent.model_json_schema(mode="validation"))
    return schema


@dataclass(frozen=True, slots=True)
class PublishedSchema:
    event_type: str
    version: int
    current: bool

    @property
    def schema_id(self) -> str:
        return event_schema_id(self.event_type, self.version)

    @property
    def path(self) -> str:
        return event_schema_path(self.event_type, self.version)


def published_schemas(committed_paths: Iterable[str] = ()) -> list[PublishedSchema]:
    """Every (type, version) with a schema: the current versions of the catalogue plus the older
    versions found among ``committed_paths`` (paths inside ``schemas/``), sorted."""
    found = {(t, v): True for t, v in CATALOGUE_VERSION.items()}
    for path in committed_paths:
        match = EVENT_PATH.match(path)
        if match:
            key = (match["type"], int(match["version"]))
            found.setdefault(key, CATALOGUE_VERSION.get(key[0]) == key[1])
    return [PublishedSchema(t, v, current) for (t, v), current in sorted(found.items())]
