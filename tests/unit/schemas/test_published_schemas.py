"""The committed schemas/ folder: equal to what the models generate (CI fails on drift), every
catalogue example valid against its schema, a structurally sound AsyncAPI 3 document, and the
check that refuses breaking changes without a new version and an upcaster."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from tests.support.examples import EXAMPLE_PAYLOADS
from typer.testing import CliRunner

from branchline_cli.main import app
from branchline_cli.schema_commands import (
    default_schemas_dir,
    documented_topics,
    generated_files,
    read_committed,
    schema_problems,
)
from branchline_cli.schema_tooling.asyncapi import asyncapi_document, event_types_of_topic
from branchline_cli.schema_tooling.check import check_schema_files
from branchline_cli.schema_tooling.files import ASYNCAPI_PATH, INDEX_PATH, dump_json
from branchline_shared.events.catalogue import CATALOGUE_VERSION, PAYLOAD_MODELS, PERSONAL_FIELDS
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.json_schema import ENVELOPE_PATH, event_schema_path
from branchline_shared.events.upcasting import UPCASTERS

pytestmark = pytest.mark.unit

REPO_SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return generated_files(read_committed(REPO_SCHEMAS))


def schema_at(files: dict[str, str], event_type: str, version: int | None = None) -> dict[str, Any]:
    version = version or CATALOGUE_VERSION[event_type]
    parsed: dict[str, Any] = json.loads(files[event_schema_path(event_type, version)])
    return parsed


# --- the committed folder ---------------------------------------------------------------------


def test_committed_schemas_are_the_generated_ones() -> None:
    """Fails when a model changed and `branchline schemas generate` was not run, or when the
    change is breaking without a new SCHEMA_VERSION and an upcaster."""
    assert default_schemas_dir(Path(__file__).parent) == REPO_SCHEMAS
    problems = schema_problems(REPO_SCHEMAS)
    assert not problems, "\n".join(str(p) for p in problems)


def test_every_type_and_version_has_a_committed_schema() -> None:
    committed = read_committed(REPO_SCHEMAS)
    for event_type, version in CATALOGUE_VERSION.items():
        assert event_schema_path(event_type, version) in committed
    index = json.loads(committed[INDEX_PATH])
    listed = {(e["type"], e["version"]) for e in index["events"]}
    assert listed >= set(CATALOGUE_VERSION.items())


def test_generation_is_deterministic(generated: dict[str, str]) -> None:
    assert generated_files(read_committed(REPO_SCHEMAS)) == generated


def test_generation_ignores_the_environment(
    generated: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRANCHLINE_TOPIC_NAMESPACE", "elsewhere")
    assert documented_topics().intake_events.name == "branchline.intake.events.v1"
    assert generated_files(read_committed(REPO_SCHEMAS)) == generated


# --- the schemas validate what they describe ----------------------------------------------------


@pytest.mark.parametrize("event_type", sorted(PAYLOAD_MODELS))
def test_every_example_is_valid_against_its_schema(
    generated: dict[str, str], event_type: str
) -> None:
    schema = schema_at(generated, event_type, CATALOGUE_VERSION[event_type])
    validator = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = [e.message for e in validator.iter_errors(EXAMPLE_PAYLOADS[event_type])]
    assert not errors


@pytest.mark.parametrize("event_type", sorted(PAYLOAD_MODELS))
def test_every_schema_rejects_an_unknown_field(generated: dict[str, str], event_type: str) -> None:
    schema = schema_at(generated, event_type, CATALOGUE_VERSION[event_type])
    bad = {**EXAMPLE_PAYLOADS[event_type], "not_a_field": 1}
    assert not jsonschema.Draft202012Validator(schema).is_valid(bad)


def test_schema_documents_carry_id_version_and_personal_paths(generated: dict[str, str]) -> None:
    schema = schema_at(generated, "client.personal_data_recorded")
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"].endswith("/schemas/events/client.personal_data_recorded/v1.json")
    assert schema["x-schema-version"] == 1
    assert schema["x-personal-paths"] == list(PERSONAL_FIELDS["client.personal_data_recorded"])


def test_a_recorded_envelope_is_valid_against_the_envelope_schema(
    generated: dict[str, str],
) -> None:
    envelope = RecordedEvent.model_validate(
        {
            "event_id": "0193f0c2-7a1e-7c3b-9d2e-5f8a1b2c3d4e",
            "type": "client.registered",
            "occurred_at": "2026-11-22T09:00:00+08:00",
            "recorded_at": "2026-11-22T09:00:01+08:00",
            "source": "intake",
            "actor": {"id": "staff-17", "role": "teller"},
            "client_id": "C-10001",
            "stream_id": "client-C-10001",
            "stream_version": 1,
            "data": dict(EXAMPLE_PAYLOADS["client.registered"]),
        }
    ).model_dump(mode="json")
    schema = json.loads(generated[ENVELOPE_PATH])
    jsonschema.Draft202012Validator(schema).validate(envelope)


# --- AsyncAPI -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def asyncapi(generated: dict[str, str]) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(generated[ASYNCAPI_PATH])
    return document


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def all_refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in all_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in all_refs(v)]
    return []


def test_asyncapi_document_has_the_required_structure(asyncapi: dict[str, Any]) -> None:
    assert asyncapi["asyncapi"] == "3.0.0"
    assert asyncapi["info"]["title"]
    assert asyncapi["info"]["version"]
    servers = asyncapi["servers"]
    assert servers["embedded"] == {
        "host": "127.0.0.1:9092",
        "protocol": "kafka",
        "description": servers["embedded"]["description"],
    }
    assert {s["host"] for k, s in servers.items() if k.startswith("production")} == {
        "kafka-1:9092",
        "kafka-2:9092",
        "kafka-3:9092",
    }
    addresses = {c["address"] for c in asyncapi["channels"].values()}
    assert addresses == {
        "branchline.intake.events.v1",
        "branchline.followup.events.v1",
        "branchline.followup-worker.dlq.v1",
        "branchline.audit-consumer.dlq.v1",
    }
    for channel in asyncapi["channels"].values():
        assert channel["bindings"]["kafka"]["topic"] == channel["address"]
        assert channel["messages"]
    for operation in asyncapi["operations"].values():
        assert operation["action"] in ("send", "receive")
        resolve(asyncapi, operation["channel"]["$ref"])
    actions = {(o["action"], o["channel"]["$ref"]) for o in asyncapi["operations"].values()}
    assert ("send", "#/channels/intakeEvents") in actions
    assert ("send", "#/channels/followupEvents") in actions
    assert ("receive", "#/channels/intakeEvents") in actions
    assert ("receive", "#/channels/followupEvents") in actions
    for ref in all_refs(asyncapi):
        resolve(asyncapi, ref)  # every reference points at something


def test_every_event_type_is_a_message_on_exactly_one_topic(asyncapi: dict[str, Any]) -> None:
    intake = asyncapi["channels"]["intakeEvents"]["messages"]
    followup = asyncapi["channels"]["followupEvents"]["messages"]
    assert set(intake).isdisjoint(followup)
    assert {m.rsplit(".", 1)[0] for m in (*intake, *followup)} == set(PAYLOAD_MODELS)
    assert "rule.violation_refused.v1" in intake
    assert set(event_types_of_topic("followup")) == {
        "client.personal_data_accessed",
        "client.personal_data_shredded",
        "staff.personal_data_shredded",
        "staff.personal_data_accessed",
        *(t for t in PAYLOAD_MODELS if t.startswith("followup.")),
    }


def test_messages_carry_key_headers_and_the_types_data_schema(asyncapi: dict[str, Any]) -> None:
    message = asyncapi["components"]["messages"]["product.sold.v1"]
    assert message["bindings"]["kafka"]["key"]["type"] == "string"
    headers = resolve(asyncapi, message["headers"]["$ref"])
    assert set(headers["required"]) == {"event_id", "type", "source", "global_position"}
    envelope_ref, specifics = message["payload"]["allOf"]
    assert envelope_ref == {"$ref": "#/components/schemas/Envelope"}
    assert specifics["properties"]["type"] == {"const": "product.sold"}
    assert specifics["properties"]["schema_version"] == {"const": 1}
    data = resolve(asyncapi, specifics["properties"]["data"]["$ref"])
    assert set(data["required"]) == {"product_id", "amount"}
    dead = asyncapi["components"]["messages"]["deadLetter"]
    dlq_headers = resolve(asyncapi, dead["headers"]["$ref"])
    assert "dlq_reason" in dlq_headers["required"]


def test_personal_values_are_sealed_strings_on_the_topics(asyncapi: dict[str, Any]) -> None:
    """On Kafka a personal value is ciphertext (ADR-0007), and the document says so."""
    schemas = asyncapi["components"]["schemas"]
    sealed = {"$ref": "#/components/schemas/SealedValue"}
    recorded = schemas["client.personal_data_recorded.v1.data"]["properties"]["fields"]
    assert recorded["additionalProperties"] == sealed
    assert recorded["propertyNames"] == {"$ref": "#/components/schemas/PersonalField"}
    note = schemas["visit.needs_confirmed.v1.data"]["properties"]["note"]
    assert note["anyOf"] == [sealed, {"type": "null"}]
    assert schemas["complaint.received.v1.data"]["properties"]["summary"]["$ref"] == sealed["$ref"]
    pattern = schemas["SealedValue"]["pattern"]
    assert jsonschema.Draft202012Validator({"type": "string", "pattern": pattern}).is_valid(
        "bl:pii:v1:AbC_-1:bm9uY2U:Y2lwaGVy"
    )


def test_asyncapi_addresses_follow_the_topics_it_is_given() -> None:
    from branchline_shared.kafka.topics import declare_topics
    from branchline_shared.settings import BranchlineSettings

    topics = declare_topics(BranchlineSettings.model_construct(topic_namespace="bank-a"))
    document = asyncapi_document(topics)
    assert document["channels"]["intakeEvents"]["address"] == "bank-a.intake.events.v1"


# --- the check --------------------------------------------------------------------------------


def committed_with(
    generated: dict[str, str], event_type: str, mutate: Any, version: int = 1
) -> dict[str, str]:
    """The committed folder as it was before the model changed: ``mutate`` turns today's
    schema into the one committed earlier."""
    committed = dict(generated)
    schema = copy.deepcopy(schema_at(generated, event_type, version))
    mutate(schema)
    committed[event_schema_path(event_type, version)] = dump_json(schema)
    return committed


def test_a_description_change_is_drift(generated: dict[str, str]) -> None:
    committed = committed_with(
        generated, "product.sold", lambda s: s.update(description="older words")
    )
    (problem,) = check_schema_files(committed, generated, set())
    assert problem.kind == "drift"
    assert "branchline schemas generate" in problem.message


def test_a_missing_file_is_drift(generated: dict[str, str]) -> None:
    committed = {k: v for k, v in generated.items() if k != ENVELOPE_PATH}
    (problem,) = check_schema_files(committed, generated, set())
    assert (problem.kind, problem.path) == ("drift", ENVELOPE_PATH)


def test_a_removed_field_is_breaking_and_names_the_type(generated: dict[str, str]) -> None:
    def had_branch_code(schema: dict[str, Any]) -> None:
        schema["properties"]["branch_code"] = {"type": "string"}

    committed = committed_with(generated, "product.sold", had_branch_code)
    (problem,) = check_schema_files(committed, generated, set())
    assert problem.kind == "breaking"
    assert "'product.sold' v1" in problem.message
    assert "SCHEMA_VERSION to 2" in problem.message
    assert "property 'branch_code' removed" in problem.message


def test_a_new_required_field_is_breaking(generated: dict[str, str]) -> None:
    committed = committed_with(generated, "visit.closed", lambda s: s["required"].remove("outcome"))
    (problem,) = check_schema_files(committed, generated, set())
    assert problem.kind == "breaking"
    assert "property 'outcome' became required" in problem.message


def test_a_narrowed_envelope_is_breaking(generated: dict[str, str]) -> None:
    committed = dict(generated)
    envelope = json.loads(generated[ENVELOPE_PATH])
    envelope["properties"]["source"]["type"] = ["string", "integer"]
    committed[ENVELOPE_PATH] = dump_json(envelope)
    (problem,) = check_schema_files(committed, generated, set())
    assert (problem.kind, problem.path) == ("breaking", ENVELOPE_PATH)


def bumped(generated: dict[str, str], event_type: str) -> tuple[dict[str, str], dict[str, int]]:
    """The generated files once ``event_type`` moved to v2 (v1 kept as committed)."""
    files = dict(generated)
    files[event_schema_path(event_type, 2)] = files.pop(event_schema_path(event_type, 1))
    return files, {**CATALOGUE_VERSION, event_type: 2}


def test_a_new_version_without_an_upcaster_fails(generated: dict[str, str]) -> None:
    files, current = bumped(generated, "product.sold")
    committed = {
        **files,
        event_schema_path("product.sold", 1): generated[event_schema_path("product.sold", 1)],
    }
    (problem,) = check_schema_files(committed, files, set(), current)
    assert problem.kind == "missing-upcaster"
    assert "'product.sold' is at v2" in problem.message


def test_a_new_version_with_an_upcaster_passes_and_keeps_the_old_file(
    generated: dict[str, str],
) -> None:
    files, current = bumped(generated, "product.sold")
    old = event_schema_path("product.sold", 1)
    committed = {**files, old: generated[old]}
    assert check_schema_files(committed, files, {("product.sold", 1)}, current) == []


def test_a_committed_version_newer_than_the_model_fails(generated: dict[str, str]) -> None:
    committed = {**generated, event_schema_path("product.sold", 2): "{}"}
    problems = check_schema_files(committed, generated, set())
    assert [p.kind for p in problems] == ["stale"]


def test_an_event_type_removed_from_the_catalogue_fails(generated: dict[str, str]) -> None:
    committed = {**generated, event_schema_path("visit.teleported", 1): "{}"}
    (problem,) = check_schema_files(committed, generated, set())
    assert problem.kind == "breaking"
    assert "'visit.teleported'" in problem.message


def test_the_products_upcasters_cover_every_committed_older_version() -> None:
    committed = read_committed(REPO_SCHEMAS)
    problems = check_schema_files(committed, committed, UPCASTERS.registered())
    assert [p for p in problems if p.kind == "missing-upcaster"] == []


# --- the command ------------------------------------------------------------------------------


def run(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def test_generate_then_check_passes(tmp_path: Path) -> None:
    folder = tmp_path / "schemas"
    # the versions before the current ones are history: committed once, never generated again
    for path, text in read_committed(REPO_SCHEMAS).items():
        older = re.fullmatch(r"events/(.+)/v(\d+)\.json", path)
        if older and int(older[2]) < CATALOGUE_VERSION.get(older[1], 0):
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_text(text, encoding="utf-8")
    first = run("schemas", "generate", "--dir", str(folder))
    assert first.exit_code == 0, first.output
    assert read_committed(folder) == read_committed(REPO_SCHEMAS)
    checked = run("schemas", "check", "--dir", str(folder))
    assert checked.exit_code == 0, checked.output


def test_check_fails_on_drift_and_generate_repairs_it(tmp_path: Path) -> None:
    folder = tmp_path / "schemas"
    assert run("schemas", "generate", "--dir", str(folder)).exit_code == 0
    target = folder / "events" / "visit.arrived" / "v1.json"
    schema = json.loads(target.read_text())
    schema["description"] = "stale words"
    target.write_text(dump_json(schema))
    checked = run("schemas", "check", "--dir", str(folder))
    assert checked.exit_code == 1
    assert "[drift] events/visit.arrived/v1.json" in checked.output
    assert "branchline schemas generate" in checked.output
    assert run("schemas", "generate", "--dir", str(folder)).exit_code == 0
    assert run("schemas", "check", "--dir", str(folder)).exit_code == 0


def test_generate_refuses_to_overwrite_a_version_with_a_breaking_change(tmp_path: Path) -> None:
    folder = tmp_path / "schemas"
    assert run("schemas", "generate", "--dir", str(folder)).exit_code == 0
    target = folder / "events" / "client.registered" / "v1.json"
    schema = json.loads(target.read_text())
    schema["properties"]["segment"] = {"type": "string"}  # the model "dropped" this field
    before = dump_json(schema)
    target.write_text(before)
    (folder / "index.json").unlink()

    refused = run("schemas", "generate", "--dir", str(folder))
    assert refused.exit_code == 1
    assert "'client.registered' v1" in refused.output
    assert "property 'segment' removed" in refused.output
    assert "nothing written" in refused.output
    assert target.read_text() == before
    assert not (folder / "index.json").exists()
    assert run("schemas", "check", "--dir", str(folder)).exit_code == 1
