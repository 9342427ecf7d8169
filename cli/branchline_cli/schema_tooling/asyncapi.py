"""The AsyncAPI 3.0 document of the topics (``schemas/asyncapi.yaml``, ADR-0004).

On the topics, the personal values of a payload (``x-personal-paths``) are sealed strings
(:mod:`branchline_shared.crypto.sealing`); the messages' ``data`` schemas say so. The topics
are passed in (:class:`TopicsLike`), so this module stays free of Kafka imports.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any, Literal, Protocol

from branchline_shared.crypto.sealing import PREFIX as SEALED_PREFIX
from branchline_shared.events.catalogue import (
    CATALOGUE_VERSION,
    PAYLOAD_MODELS,
    PERSONAL_FIELDS,
    EventType,
)
from branchline_shared.events.json_schema import envelope_schema, event_schema, event_schema_id


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
    {
        EventType.CLIENT_PERSONAL_DATA_ACCESSED.value,
        EventType.CLIENT_PERSONAL_DATA_SHREDDED.value,
        EventType.STAFF_PERSONAL_DATA_SHREDDED.value,
        EventType.STAFF_PERSONAL_DATA_ACCESSED.value,
    }
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
                "url": event_schema_id(event_type, version),
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
    required = list(event_headers)
    event_headers["requeued"] = {
        "type": "string",
        "const": "1",
        "description": "Present on a copy published again after its first publication (a "
        "repair re-queued it for a consumer that missed it); absent on a first publication.",
    }
    schemas["EventHeaders"] = {
        "type": "object",
        "properties": event_headers,
        "required": required,
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
