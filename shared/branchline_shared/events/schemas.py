"""Published event schemas (ADR-0004): generation and compatibility, pure.

What is generated from the models (and committed under ``schemas/`` in the repository):

* ``events/<type>/v<N>.json``: the JSON Schema (draft 2020-12) of the ``data`` of one event type
  at one schema version: the payload model's validation schema, i.e. what intake accepts.
  Only the model's current ``SCHEMA_VERSION`` can be generated; older files stay as committed.
* ``envelope.json``: the envelope on the wire (:class:`~.envelope.RecordedEvent`).
* ``asyncapi.yaml``: an AsyncAPI 3.0 document of the topics, their keys, headers and messages.
  On the topics, the personal values of a payload (``x-personal-paths``) are sealed strings
  (:mod:`branchline_shared.crypto.sealing`); the messages' ``data`` schemas say so.
* ``index.json``: every published schema with its ``$id`` and path.

Compatibility (:func:`compare_schemas`) asks one question of two schemas of the same
(type, version): does the new one still accept every document the old one accepted? A change
that narrows (a property removed, a type or value set narrowed, a limit tightened, a format or
pattern added, a new required property) is *breaking*: stored events written under the old
schema may no longer read. A breaking change needs a new ``SCHEMA_VERSION`` (a new file next to
the old one) and an upcaster from the old version (:mod:`.upcasting`);
:func:`check_schema_files` enforces both.

The topics are passed in (:class:`TopicsLike`), so this module stays free of Kafka imports.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import yaml  # type: ignore[import-untyped,unused-ignore]

from branchline_shared.crypto.sealing import PREFIX as SEALED_PREFIX
from branchline_shared.events.catalogue import (
    CATALOGUE_VERSION,
    PAYLOAD_MODELS,
    PERSONAL_FIELDS,
    EventType,
)
from branchline_shared.events.envelope import RecordedEvent

__all__ = [
    "ASYNCAPI_PATH",
    "ENVELOPE_PATH",
    "INDEX_PATH",
    "JSON_SCHEMA_DIALECT",
    "SCHEMA_BASE",
    "Change",
    "PublishedSchema",
    "SchemaDiff",
    "SchemaProblem",
    "TopicLike",
    "TopicsLike",
    "asyncapi_document",
    "check_schema_files",
    "compare_schemas",
    "dump_json",
    "envelope_schema",
    "event_schema",
    "event_schema_path",
    "event_types_of_topic",
    "published_schemas",
    "resolve_refs",
    "schema_files",
]

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
SCHEMA_BASE = "https://branchline.dev/schemas/"
ENVELOPE_PATH = "envelope.json"
ASYNCAPI_PATH = "asyncapi.yaml"
INDEX_PATH = "index.json"
_EVENT_PATH = re.compile(r"^events/(?P<type>[a-z0-9_.]+)/v(?P<version>[1-9][0-9]*)\.json$")

# --- generation -----------------------------------------------------------------------------


def event_schema_path(event_type: str, version: int) -> str:
    """Path of one event schema inside ``schemas/`` (POSIX separators)."""
    return f"events/{event_type}/v{version}.json"


def _event_schema_id(event_type: str, version: int) -> str:
    return SCHEMA_BASE + event_schema_path(event_type, version)


def event_schema(event_type: str) -> dict[str, Any]:
    """The JSON Schema of ``data`` of ``event_type`` at its current schema version.

    Raises KeyError for a type the catalogue lacks."""
    model = PAYLOAD_MODELS[event_type]
    version = model.SCHEMA_VERSION
    generated = model.model_json_schema(mode="validation")
    schema: dict[str, Any] = {
        "$schema": JSON_SCHEMA_DIALECT,
        "$id": _event_schema_id(event_type, version),
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
        return _event_schema_id(self.event_type, self.version)

    @property
    def path(self) -> str:
        return event_schema_path(self.event_type, self.version)


def published_schemas(committed_paths: Iterable[str] = ()) -> list[PublishedSchema]:
    """Every (type, version) with a schema: the current versions of the catalogue plus the older
    versions found among ``committed_paths`` (paths inside ``schemas/``), sorted."""
    found = {(t, v): True for t, v in CATALOGUE_VERSION.items()}
    for path in committed_paths:
        match = _EVENT_PATH.match(path)
        if match:
            key = (match["type"], int(match["version"]))
            found.setdefault(key, CATALOGUE_VERSION.get(key[0]) == key[1])
    return [PublishedSchema(t, v, current) for (t, v), current in sorted(found.items())]


def dump_json(document: Any) -> str:
    """The one text form of every generated JSON file (stable, so a diff means a change)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def dump_yaml(document: Any) -> str:
    text: str = yaml.safe_dump(
        document, sort_keys=False, allow_unicode=True, width=100, default_flow_style=False
    )
    return text


def schema_files(topics: TopicsLike, committed_paths: Iterable[str] = ()) -> dict[str, str]:
    """Every file the generator writes into ``schemas/`` (path → text). ``committed_paths``
    are the paths already there; older versions among them are listed in the index, never
    rewritten."""
    files = {
        event_schema_path(t, v): dump_json(event_schema(t)) for t, v in CATALOGUE_VERSION.items()
    }
    files[ENVELOPE_PATH] = dump_json(envelope_schema())
    files[ASYNCAPI_PATH] = dump_yaml(asyncapi_document(topics))
    index = {
        "envelope": {"$id": SCHEMA_BASE + ENVELOPE_PATH, "path": ENVELOPE_PATH},
        "asyncapi": {"path": ASYNCAPI_PATH},
        "catalogue_version": dict(sorted(CATALOGUE_VERSION.items())),
        "events": [
            {
                "type": s.event_type,
                "version": s.version,
                "current": s.current,
                "$id": s.schema_id,
                "path": s.path,
            }
            for s in published_schemas(committed_paths)
        ],
    }
    files[INDEX_PATH] = dump_json(index)
    return dict(sorted(files.items()))


# --- AsyncAPI ---------------------------------------------------------------------------------


class TopicLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def config(self) -> dict[str, str]: ...


class TopicsLike(Protocol):
    """What :func:`~branchline_shared.kafka.topics.declare_topics` returns."""

    @property
    def intake_events(self) -> TopicLike: ...
    @property
    def followup_events(self) -> TopicLike: ...
    @property
    def followup_worker_dlq(self) -> TopicLike: ...
    @property
    def audit_consumer_dlq(self) -> TopicLike: ...


_FOLLOWUP_TOPIC_TYPES = frozenset(
    {EventType.CLIENT_PERSONAL_DATA_ACCESSED.value, EventType.CLIENT_PERSONAL_DATA_SHREDDED.value}
)
_KAFKA_BINDING = "0.5.0"
_ID_PATTERN = r"^[A-Za-z0-9._:@\-]+$"


def event_types_of_topic(topic: Literal["intake", "followup"]) -> list[str]:
    """The event types published on intake's or followup's topic: followup writes the
    ``followup.*`` family and the record of a personal-data access; intake everything else
    (including its own ``rule.violation_refused``)."""

    def on_followup(event_type: str) -> bool:
        return event_type.startswith("followup.") or event_type in _FOLLOWUP_TOPIC_TYPES

    return sorted(t for t in PAYLOAD_MODELS if on_followup(t) == (topic == "followup"))


def _ref(pointer: str) -> dict[str, str]:
    return {"$ref": pointer}


def _hoist(schema: Mapping[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """``schema`` without ``$defs``/``$schema``/``$id``, its ``#/$defs/X`` references pointed
    at ``#/components/schemas/X``; its definitions added to ``defs`` (same name, same schema)."""

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
                    out[key] = "#/components/schemas/" + value.removeprefix("#/$defs/")
                else:
                    out[key] = rewrite(value)
            return out
        if isinstance(node, list):
            return [rewrite(item) for item in node]
        return node

    for name, definition in schema.get("$defs", {}).items():
        rewritten = rewrite(definition)
        if defs.setdefault(name, rewritten) != rewritten:
            raise ValueError(f"two different schemas are both called {name!r}")
    return {k: rewrite(v) for k, v in schema.items() if k not in ("$defs", "$schema", "$id")}


def _sealed(original: Mapping[str, Any]) -> dict[str, Any]:
    """The wire form of a personal value: sealed strings where the clear ones stood."""
    sealed_value = _ref("#/components/schemas/SealedValue")
    branches = original.get("anyOf", [original])
    nullable = any(b.get("type") == "null" for b in branches)
    value_branches = [b for b in branches if b.get("type") != "null"]
    if len(value_branches) == 1 and value_branches[0].get("type") == "object":
        clear = value_branches[0]
        wire: dict[str, Any] = {
            "type": "object",
            "additionalProperties": sealed_value,
            **{
                k: clear[k]
                for k in ("propertyNames", "minProperties", "maxProperties")
                if k in clear
            },
        }
    else:
        wire = dict(sealed_value)
    if nullable:
        wire = {"anyOf": [wire, {"type": "null"}]}
    for annotation in ("title", "description"):
        if annotation in original:
            wire[annotation] = original[annotation]
    return wire


def _wire_data_schema(event_type: str, defs: dict[str, Any]) -> dict[str, Any]:
    data = _hoist(event_schema(event_type), defs)
    properties = dict(data.get("properties", {}))
    for path in PERSONAL_FIELDS[event_type]:
        head, _, inner = path.partition(".")
        if head not in properties:
            continue
        if inner:
            properties[head] = _sealed_inside(properties[head], inner, defs)
        else:
            properties[head] = _sealed(properties[head])
    data["properties"] = properties
    return data


def _sealed_inside(schema: Mapping[str, Any], key: str, defs: Mapping[str, Any]) -> dict[str, Any]:
    """An object's schema (possibly nullable, possibly a reference) with its property ``key``
    sealed: the referenced definition is copied inline, the shared one stays clear."""

    def one(branch: Mapping[str, Any]) -> dict[str, Any]:
        ref = branch.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            branch = defs[ref.removeprefix("#/components/schemas/")]
        if branch.get("type") != "object" or key not in branch.get("properties", {}):
            return dict(branch)
        copied = copy.deepcopy(dict(branch))
        copied["properties"][key] = _sealed(copied["properties"][key])
        return copied

    if "anyOf" in schema:
        return {**schema, "anyOf": [one(b) for b in schema["anyOf"]]}
    return one(schema)


def _message_id(event_type: str) -> str:
    return f"{event_type}.v{CATALOGUE_VERSION[event_type]}"


def _channel(
    address: str, title: str, description: str, topic: TopicLike, messages: list[str]
) -> dict[str, Any]:
    config = topic.config
    topic_configuration: dict[str, Any] = {}
    if "cleanup.policy" in config:
        topic_configuration["cleanup.policy"] = config["cleanup.policy"].split(",")
    if "retention.ms" in config:
        topic_configuration["retention.ms"] = int(config["retention.ms"])
    return {
        "address": address,
        "title": title,
        "description": description,
        "messages": {m: _ref(f"#/components/messages/{m}") for m in messages},
        "bindings": {
            "kafka": {
                "topic": address,
                "topicConfiguration": topic_configuration,
                "bindingVersion": _KAFKA_BINDING,
            }
        },
    }


def _operation(
    action: Literal["send", "receive"], channel: str, title: str, summary: str
) -> dict[str, Any]:
    return {
        "action": action,
        "channel": _ref(f"#/channels/{channel}"),
        "title": title,
        "summary": summary,
    }


def asyncapi_document(topics: TopicsLike) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of Branchline's topics (addresses as named by ``topics``)."""
    defs: dict[str, Any] = {}
    envelope = _hoist(envelope_schema(), defs)
    schemas: dict[str, Any] = {"Envelope": envelope}
    messages: dict[str, Any] = {}
    key_schema = {
        "type": "string",
        "minLength": 1,
        "maxLength": 128,
        "pattern": _ID_PATTERN,
        "description": "The client id: one client's events stay in order on one partition.",
    }
    for event_type in sorted(PAYLOAD_MODELS):
        version = CATALOGUE_VERSION[event_type]
        data_name = f"{event_type}.v{version}.data"
        schemas[data_name] = _wire_data_schema(event_type, defs)
        model = PAYLOAD_MODELS[event_type]
        messages[_message_id(event_type)] = {
            "name": event_type,
            "title": f"{event_type} v{version}",
            "summary": (model.__doc__ or event_type).strip().splitlines()[0],
            "contentType": "application/json",
            "headers": _ref("#/components/schemas/EventHeaders"),
            "payload": {
                "allOf": [
                    _ref("#/components/schemas/Envelope"),
                    {
                        "type": "object",
                        "properties": {
                            "type": {"const": event_type},
                            "schema_version": {"const": version},
                            "data": _ref(f"#/components/schemas/{data_name}"),
                        },
                    },
                ]
            },
            "correlationId": {
                "description": "Events of one journey share a correlation id.",
                "location": "$message.payload#/correlation_id",
            },
            "bindings": {"kafka": {"key": key_schema, "bindingVersion": _KAFKA_BINDING}},
            "externalDocs": {
                "description": "JSON Schema of data",
                "url": _event_schema_id(event_type, version),
            },
        }
    messages["deadLetter"] = {
        "name": "dead_letter",
        "title": "Dead letter",
        "summary": "A message its consumer can never process, unchanged, with the reason.",
        "contentType": "application/json",
        "headers": _ref("#/components/schemas/DeadLetterHeaders"),
        "payload": {
            "description": "The original message value, byte for byte (possibly not an "
            "envelope, possibly not JSON: that may be why it is here)."
        },
        "bindings": {"kafka": {"key": key_schema, "bindingVersion": _KAFKA_BINDING}},
    }
    event_headers: dict[str, Any] = {
        "event_id": {"type": "string", "format": "uuid", "description": "The event's id."},
        "type": {"type": "string", "description": "The event type (routing without parsing)."},
        "source": {"type": "string", "description": "The service that recorded the event."},
        "global_position": {
            "type": "string",
            "pattern": "^[0-9]+$",
            "description": "Position in the writing service's event store (decimal).",
        },
    }
    schemas["EventHeaders"] = {
        "type": "object",
        "properties": event_headers,
        "required": list(event_headers),
    }
    dlq_headers: dict[str, Any] = {
        "dlq_reason": {"type": "string", "maxLength": 2000, "description": "Why it failed."},
        "dlq_consumer": {"type": "string", "description": "The consumer that gave up."},
        "dlq_source_topic": {"type": "string"},
        "dlq_source_partition": {"type": "string", "pattern": "^[0-9]+$"},
        "dlq_source_offset": {"type": "string", "pattern": "^[0-9]+$"},
    }
    schemas["DeadLetterHeaders"] = {
        "type": "object",
        "description": "The original message's headers (those it had), plus the dlq_* ones.",
        "properties": {**event_headers, **dlq_headers},
        "required": list(dlq_headers),
    }
    schemas["SealedValue"] = {
        "type": "string",
        "pattern": "^"
        + re.escape(SEALED_PREFIX)
        + r"[A-Za-z0-9_-]+:[A-Za-z0-9_-]+:[A-Za-z0-9_-]+$",
        "description": "A personal value sealed with the client's data key (AES-256-GCM): "
        "bl:pii:v1:<key id>:<base64url nonce>:<base64url ciphertext and tag>.",
    }
    schemas.update(sorted(defs.items()))

    intake_types = [_message_id(t) for t in event_types_of_topic("intake")]
    followup_types = [_message_id(t) for t in event_types_of_topic("followup")]
    channels = {
        "intakeEvents": _channel(
            topics.intake_events.name,
            "Intake events",
            "Events accepted by intake (and its recorded refusals), relayed from its "
            "transactional outbox. Key = client id.",
            topics.intake_events,
            intake_types,
        ),
        "followupEvents": _channel(
            topics.followup_events.name,
            "Followup events",
            "Events of follow-up tasks and personal-data access, relayed from followup's "
            "outbox. Key = client id.",
            topics.followup_events,
            followup_types,
        ),
        "followupWorkerDeadLetters": _channel(
            topics.followup_worker_dlq.name,
            "Followup worker dead letters",
            "Poison messages the followup worker gave up on.",
            topics.followup_worker_dlq,
            ["deadLetter"],
        ),
        "auditConsumerDeadLetters": _channel(
            topics.audit_consumer_dlq.name,
            "Audit consumer dead letters",
            "Poison messages the audit consumer gave up on.",
            topics.audit_consumer_dlq,
            ["deadLetter"],
        ),
    }
    operations = {
        "intakePublishesEvents": _operation(
            "send", "intakeEvents", "Intake publishes", "The intake outbox relay publishes."
        ),
        "followupPublishesEvents": _operation(
            "send", "followupEvents", "Followup publishes", "The followup outbox relay publishes."
        ),
        "followupWorkerReceivesIntakeEvents": _operation(
            "receive", "intakeEvents", "Followup worker consumes", "Builds tasks and read models."
        ),
        "followupWorkerReceivesFollowupEvents": _operation(
            "receive", "followupEvents", "Followup worker consumes", "Builds read models."
        ),
        "auditConsumerReceivesIntakeEvents": _operation(
            "receive", "intakeEvents", "Audit consumer consumes", "Appends to the ledger."
        ),
        "auditConsumerReceivesFollowupEvents": _operation(
            "receive", "followupEvents", "Audit consumer consumes", "Appends to the ledger."
        ),
        "followupWorkerSendsDeadLetters": _operation(
            "send", "followupWorkerDeadLetters", "Followup worker dead-letters", "Poison events."
        ),
        "auditConsumerSendsDeadLetters": _operation(
            "send", "auditConsumerDeadLetters", "Audit consumer dead-letters", "Poison events."
        ),
    }
    return {
        "asyncapi": "3.0.0",
        "id": "urn:branchline:events",
        "info": {
            "title": "Branchline events",
            "version": "1.0.0",
            "description": "The event log of Branchline, an event-sourced CRM: JSON envelopes "
            "on Kafka topics, keyed by client id. Each message names its payload's schema "
            "version; a reader upcasts older versions. Personal values are sealed "
            "(x-personal-paths of each data schema).",
            "license": {"name": "Apache-2.0"},
        },
        "defaultContentType": "application/json",
        "servers": {
            "embedded": {
                "host": "127.0.0.1:9092",
                "protocol": "kafka",
                "description": "The embedded Kafka-protocol broker of `branchline dev`.",
            },
            **{
                f"production-kafka-{n}": {
                    "host": f"kafka-{n}:9092",
                    "protocol": "kafka",
                    "description": f"Apache Kafka (KRaft) broker {n} of 3: replication "
                    "factor 3, min.insync.replicas 2.",
                }
                for n in (1, 2, 3)
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": schemas, "messages": messages},
    }


# --- $ref resolution --------------------------------------------------------------------------


def _pointer(root: Mapping[str, Any], ref: str) -> Any:
    node: Any = root
    for raw in ref.removeprefix("#/").split("/") if ref != "#" else []:
        part = raw.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def resolve_refs(schema: Any) -> Any:
    """``schema`` with every local ``$ref`` (``#/...``) replaced by what it points at (sibling
    keywords merged in) and ``$defs`` dropped. A recursive reference stays a ``$ref``."""
    if not isinstance(schema, dict):
        return schema
    root = schema

    def walk(node: Any, active: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(item, active) for item in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#") and ref not in active:
            target = walk(_pointer(root, ref), (*active, ref))
            siblings = {k: walk(v, active) for k, v in node.items() if k not in ("$ref", "$defs")}
            if isinstance(target, dict):
                return {**target, **siblings}
            return target if not siblings else {"allOf": [target, siblings]}
        return {k: walk(v, active) for k, v in node.items() if k != "$defs"}

    return walk(copy.deepcopy(schema), ())


# --- compatibility ----------------------------------------------------------------------------

ChangeKind = Literal["breaking", "compatible"]


@dataclass(frozen=True, slots=True)
class Change:
    kind: ChangeKind
    path: str
    """Where in the document: ``$`` the root, ``$.refused_event.actor.id``, ``$.purposes[]``."""
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass(frozen=True, slots=True)
class SchemaDiff:
    changes: tuple[Change, ...]

    @property
    def breaking(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.kind == "breaking")

    @property
    def compatible(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.kind == "compatible")

    @property
    def is_breaking(self) -> bool:
        return bool(self.breaking)


_ANNOTATIONS = frozenset(
    {
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "$comment",
        "$id",
        "$schema",
        "$anchor",
    }
)
_UPPER_BOUNDS = ("maxLength", "maxItems", "maxProperties", "maximum", "exclusiveMaximum")
_LOWER_BOUNDS = ("minLength", "minItems", "minProperties", "minimum", "exclusiveMinimum")
_ADDED_NARROWS = ("pattern", "format", "multipleOf", "contentEncoding", "contentMediaType")
_COMBINATORS = ("anyOf", "oneOf")
_HANDLED = frozenset(
    {
        "type",
        "enum",
        "const",
        *_UPPER_BOUNDS,
        *_LOWER_BOUNDS,
        *_ADDED_NARROWS,
        "uniqueItems",
        "properties",
        "required",
        "additionalProperties",
        "propertyNames",
        "patternProperties",
        "items",
        "prefixItems",
        *_COMBINATORS,
        "allOf",
    }
)


def _is_annotation(keyword: str) -> bool:
    return keyword in _ANNOTATIONS or keyword.startswith("x-")


def _accepts_anything(schema: Any) -> bool:
    if schema is True:
        return True
    return isinstance(schema, dict) and all(_is_annotation(k) for k in schema)


def compare_schemas(old: Mapping[str, Any] | bool, new: Mapping[str, Any] | bool) -> SchemaDiff:
    """How ``new`` differs from ``old``, each difference ``breaking`` (some document valid under
    ``old`` may be invalid under ``new``) or ``compatible`` (widened, or only annotations).

    Local ``$ref``s are resolved first. Where a proof of inclusion would need more than the
    keywords pydantic emits (a changed pattern, an unknown keyword changed), the change counts
    as breaking: when in doubt, a new version."""
    out: list[Change] = []
    _compare(resolve_refs(old), resolve_refs(new), "$", out)
    return SchemaDiff(tuple(out))


def _compare(old: Any, new: Any, path: str, out: list[Change]) -> None:
    if old == new:
        return
    if old is False:
        out.append(Change("compatible", path, "was rejecting everything, now accepts values"))
        return
    if new is False:
        out.append(Change("breaking", path, "now rejects every value"))
        return
    old_s: dict[str, Any] = {} if old is True else dict(old)
    new_s: dict[str, Any] = {} if new is True else dict(new)
    _compare_annotations(old_s, new_s, path, out)
    if _accepts_anything(new_s):
        if not _accepts_anything(old_s):
            out.append(Change("compatible", path, "every constraint lifted"))
        return
    old_branches = _branches(old_s)
    new_branches = _branches(new_s)
    if len(old_branches) == 1 and len(new_branches) == 1:
        _compare_branch(old_branches[0], new_branches[0], path, out)
        return
    matched_new: set[int] = set()
    for old_branch in old_branches:
        old_type = _type_of(old_branch)
        candidates = [
            (i, b) for i, b in enumerate(new_branches) if _type_covers(_type_of(b), old_type)
        ]
        if not candidates:
            out.append(
                Change("breaking", path, f"type narrowed: {old_type or 'any'} no longer accepted")
            )
            continue
        best: list[Change] | None = None
        best_index = -1
        for index, candidate in candidates:
            trial: list[Change] = []
            _compare_branch(old_branch, candidate, path, trial)
            score = sum(c.kind == "breaking" for c in trial)
            if best is None or score < sum(c.kind == "breaking" for c in best):
                best, best_index = trial, index
        assert best is not None
        matched_new.add(best_index)
        out.extend(best)
    old_types = {_type_of(b) for b in old_branches}
    for index, new_branch in enumerate(new_branches):
        if index not in matched_new and _type_of(new_branch) not in old_types:
            out.append(Change("compatible", path, f"type widened: now also {_type_of(new_branch)}"))


def _compare_annotations(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str, out: list[Change]
) -> None:
    for keyword in sorted({k for k in (*old, *new) if _is_annotation(k)}):
        if old.get(keyword) != new.get(keyword):
            out.append(Change("compatible", path, f"annotation {keyword} changed"))


def _branches(schema: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The alternatives a schema accepts (anyOf/oneOf and type lists flattened), annotations
    of the outer schema left out (compared on their own)."""
    rest = {k: v for k, v in schema.items() if not _is_annotation(k)}
    for combinator in ("allOf",):
        if combinator in rest:
            merged: dict[str, Any] = {}
            for part in [rest.pop(combinator), rest]:
                for sub in part if isinstance(part, list) else [part]:
                    merged = _merge(merged, sub if isinstance(sub, dict) else {})
            rest = merged
    for combinator in _COMBINATORS:
        if combinator in rest:
            alternatives = rest.pop(combinator)
            flattened: list[dict[str, Any]] = []
            for alternative in alternatives:
                base = {**rest, **(alternative if isinstance(alternative, dict) else {})}
                flattened.extend(_branches(base))
            return flattened
    types = rest.get("type")
    if isinstance(types, list):
        return [{**rest, "type": t} for t in types]
    return [rest]


def _merge(a: dict[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(a)
    for key, value in b.items():
        if key == "properties" and key in merged:
            merged[key] = {**merged[key], **value}
        elif key == "required" and key in merged:
            merged[key] = sorted({*merged[key], *value})
        else:
            merged[key] = value
    return merged


def _type_of(schema: Mapping[str, Any]) -> str | None:
    declared = schema.get("type")
    if isinstance(declared, str):
        return declared
    values = _value_set(schema)
    if values:
        kinds = {_json_type(v) for v in values}
        if len(kinds) == 1:
            return kinds.pop()
    if "properties" in schema or "additionalProperties" in schema:
        return "object"
    if "items" in schema or "prefixItems" in schema:
        return "array"
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_covers(new_type: str | None, old_type: str | None) -> bool:
    if new_type is None:
        return True
    if old_type is None:
        return False
    return new_type == old_type or (new_type == "number" and old_type == "integer")


def _value_set(schema: Mapping[str, Any]) -> list[Any] | None:
    if "const" in schema:
        return [schema["const"]]
    if "enum" in schema:
        return list(schema["enum"])
    return None


def _show(values: Iterable[Any]) -> str:
    return ", ".join(json.dumps(v, ensure_ascii=False) for v in values)


def _compare_branch(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str, out: list[Change]
) -> None:
    old_type, new_type = _type_of(old), _type_of(new)
    if old_type != new_type:
        if _type_covers(new_type, old_type):
            out.append(Change("compatible", path, f"type widened: {old_type} → {new_type}"))
        else:
            out.append(Change("breaking", path, f"type narrowed: {old_type or 'any'} → {new_type}"))
            return
    _compare_values(old, new, path, out)
    _compare_bounds(old, new, path, out)
    for keyword in _ADDED_NARROWS:
        before, after = old.get(keyword), new.get(keyword)
        if before == after:
            continue
        if after is None:
            out.append(Change("compatible", path, f"{keyword} {before!r} removed"))
        elif keyword == "multipleOf" and before is not None and before % after == 0:
            out.append(Change("compatible", path, f"multipleOf relaxed {before} → {after}"))
        elif before is None:
            out.append(Change("breaking", path, f"{keyword} {after!r} added"))
        else:
            out.append(Change("breaking", path, f"{keyword} changed {before!r} → {after!r}"))
    if new.get("uniqueItems") and not old.get("uniqueItems"):
        out.append(Change("breaking", path, "uniqueItems added"))
    elif old.get("uniqueItems") and not new.get("uniqueItems"):
        out.append(Change("compatible", path, "uniqueItems removed"))
    _compare_object(old, new, path, out)
    _compare_array(old, new, path, out)
    for keyword in sorted({*old, *new} - _HANDLED):
        if not _is_annotation(keyword) and old.get(keyword) != new.get(keyword):
            out.append(
                Change("breaking", path, f"keyword {keyword} changed (cannot prove it is wider)")
            )


def _compare_values(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str, out: list[Change]
) -> None:
    before, after = _value_set(old), _value_set(new)
    if after is None:
        if before is not None:
            out.append(Change("compatible", path, "value set lifted"))
        return
    if before is None:
        out.append(Change("breaking", path, f"restricted to the values {_show(after)}"))
        return
    removed = [v for v in before if v not in after]
    added = [v for v in after if v not in before]
    if removed:
        out.append(Change("breaking", path, f"values removed: {_show(removed)}"))
    if added:
        out.append(Change("compatible", path, f"values added: {_show(added)}"))


def _compare_bounds(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str, out: list[Change]
) -> None:
    for keyword in (*_UPPER_BOUNDS, *_LOWER_BOUNDS):
        before, after = old.get(keyword), new.get(keyword)
        if before == after:
            continue
        if after is None:
            out.append(Change("compatible", path, f"{keyword} {before} removed"))
        elif before is None:
            out.append(Change("breaking", path, f"{keyword} {after} added"))
        elif (after < before) if keyword in _UPPER_BOUNDS else (after > before):
            out.append(Change("breaking", path, f"{keyword} tightened {before} → {after}"))
        else:
            out.append(Change("compatible", path, f"{keyword} relaxed {before} → {after}"))


def _compare_object(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str, out: list[Change]
) -> None:
    old_props: Mapping[str, Any] = old.get("properties", {})
    new_props: Mapping[str, Any] = new.get("properties", {})
    old_required = set(old.get("required", ()))
    new_required = set(new.get("required", ()))
    for name in old_props:
        if name not in new_props:
            out.append(Change("breaking", path, f"property {name!r} removed"))
        else:
            _compare(old_props[name], new_props[name], f"{path}.{name}", out)
    for name in new_props:
        if name in old_props:
            continue
        if name in new_required:
            out.append(Change("breaking", path, f"new required property {name!r}"))
        else:
            out.append(Change("compatible", path, f"new optional property {name!r}"))
    for name in sorted(new_required - old_required):
        if name in old_props or name not in new_props:
            out.append(Change("breaking", path, f"property {name!r} became required"))
    for name in sorted(old_required - new_required):
        out.append(Change("compatible", path, f"property {name!r} no longer required"))
    if "additionalProperties" in old or "additionalProperties" in new:
        _compare(
            old.get("additionalProperties", True),
            new.get("additionalProperties", True),
            f"{path}{{*}}",
            out,
        )
    if "propertyNames" in old or "propertyNames" in new:
        _compare(
            old.get("propertyNames", True), new.get("propertyNames", True), f"{path}{{keys}}", out
        )
    old_patterns: Mapping[str, Any] = old.get("patternProperties", {})
    new_patterns: Mapping[str, Any] = new.get("patternProperties", {})
    for pattern in sorted({*old_patterns, *new_patterns}):
        if pattern in old_patterns and pattern in new_patterns:
            _compare(old_patterns[pattern], new_patterns[pattern], f"{path}{{{pattern}}}", out)
        else:
            change = "removed" if pattern in old_patterns else "added"
            out.append(Change("breaking", path, f"patternProperties {pattern!r} {change}"))


def _compare_array(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str, out: list[Change]
) -> None:
    if "items" in old or "items" in new:
        _compare(old.get("items", True), new.get("items", True), f"{path}[]", out)
    old_prefix: Sequence[Any] = old.get("prefixItems", ())
    new_prefix: Sequence[Any] = new.get("prefixItems", ())
    for index in range(max(len(old_prefix), len(new_prefix))):
        before = old_prefix[index] if index < len(old_prefix) else old.get("items", True)
        after = new_prefix[index] if index < len(new_prefix) else new.get("items", True)
        _compare(before, after, f"{path}[{index}]", out)


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
        match = _EVENT_PATH.match(path)
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
            event = _EVENT_PATH.match(path)
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
    if path != ENVELOPE_PATH and not _EVENT_PATH.match(path):
        return ()
    try:
        old = json.loads(before)
    except json.JSONDecodeError:
        return ()  # a mangled file is drift: regenerating it loses nothing
    return compare_schemas(old, json.loads(after)).breaking
