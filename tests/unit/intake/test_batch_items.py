"""A batch's items validated in one call, its payloads in one call per type (#12): every
item's outcome is the one it had when each item and payload was validated alone, for any mix
of valid and invalid items; a refused item never aborts the others; the payload's dump is
``model_dump``'s."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from starlette.requests import Request
from tests.support.examples import EXAMPLE_JOURNEY, EXAMPLE_SHELF

from branchline_intake.application import submit
from branchline_intake.application.submit import IntakeContext, _payload_data, submit_events
from branchline_intake.domain import RecordedDecider
from branchline_intake.entrypoints import http
from branchline_intake.entrypoints.permissions import type_forbidden
from branchline_shared.clock import FixedClock
from branchline_shared.crypto.keystore import InMemoryClientKeyStore
from branchline_shared.crypto.sealing import PREFIX as SEALED_PREFIX
from branchline_shared.events.catalogue import parse_payload
from branchline_shared.events.envelope import SubmittedEvent
from branchline_shared.eventstore.memory import InMemoryEventStore
from branchline_shared.http.auth import Principal, Role
from branchline_shared.http.problems import field_errors, validation_problem
from branchline_shared.http.strict_input import PARSED_BODY

pytestmark = pytest.mark.unit

_NOW = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
_BRANCH = Principal(subject="bs-1", roles=frozenset({Role.BRANCH_SYSTEM}), branch_id="BR-1")
_ADMIN = Principal(subject="adm-1", roles=frozenset({Role.ADMIN}))


def _event(client: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "client.registered",
        "occurred_at": "2026-12-04T08:30:00+00:00",
        "client_id": client,
        "branch_id": "BR-1",
        "channel": "walk_in",
        "actor": {"id": "s-1", "role": "teller"},
        "data": {"client_type": "individual", "rm_id": f"rm-{client}"},
    }
    for key, value in changes.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def _consent(client: str) -> dict[str, Any]:
    return _event(client, type="client.consent_granted", data={"purposes": ["service"]})


# Each kind of item a batch may hold, valid or refused at each step before the decision.
_KINDS: dict[str, Any] = {
    "registered": lambda c: _event(c),
    "registered with an id": lambda c: _event(c, event_id=str(uuid.uuid4())),
    "consent": _consent,
    "no actor": lambda c: _event(c, actor=None),
    "not a time": lambda c: _event(c, occurred_at="yesterday"),
    "naive time": lambda c: _event(c, occurred_at="2026-12-04T08:30:00"),
    "a number as time": lambda c: _event(c, occurred_at=1764837000),
    "extra field": lambda c: _event(c, colour="blue"),
    "two subjects": lambda c: _event(c, product_id="P-1"),
    "no subject": lambda c: _event(c, client_id=None),
    "id with a space": lambda c: _event(c, client_id="C 1"),
    "type too short": lambda c: _event(c, type="ab"),
    "negative expected version": lambda c: _event(c, expected_version=-1),
    "not a uuid": lambda c: _event(c, event_id="abc"),
    "non-ASCII role": lambda c: _event(c, actor={"id": "s-1", "role": "caissière"}),
    "payload invalid": lambda c: _event(c, data={"client_type": "alien", "rm_id": "rm-1"}),
    "payload extra": lambda c: _event(c, data={"client_type": "individual", "x": 1}),
    "unknown type": lambda c: _event(c, type="no.such.type"),
    "wrong subject": lambda c: _event(c, client_id=None, product_id="P-1"),
    "governance type": lambda c: _event(
        c, type="product.approved", client_id=None, product_id="P-1", data={}
    ),
    "system type": lambda c: _event(c, type="client.data_read", data={}),
    "other branch": lambda c: _event(c, branch_id="BR-2"),
    "late entry": lambda c: _event(
        c, occurred_at="2026-11-01T08:30:00+00:00", late_entry={"reason": "paper form"}
    ),
}

# Kinds the envelope's model accepts (refused later, if at all): a batch of only these is
# validated in the one call; one item of another kind makes it validate each alone.
_ENVELOPE_VALID = sorted(
    {
        "registered",
        "registered with an id",
        "consent",
        "payload invalid",
        "payload extra",
        "unknown type",
        "wrong subject",
        "governance type",
        "system type",
        "other branch",
        "late entry",
    }
)
_CLIENT_IDS = ["C-1", "C-2", "C-3", "C-4"]
_CLIENTS = st.sampled_from(_CLIENT_IDS)
_ITEMS = st.one_of(
    st.lists(st.tuples(st.sampled_from(_ENVELOPE_VALID), _CLIENTS), min_size=1, max_size=25),
    st.lists(st.tuples(st.sampled_from(sorted(_KINDS)), _CLIENTS), min_size=1, max_size=25),
)


def _document(kinds: list[tuple[str, str]]) -> list[dict[str, Any]]:
    # as the strict input check leaves it: parsed from JSON
    events = [_KINDS[kind](client) for kind, client in kinds]
    loaded: list[dict[str, Any]] = orjson.loads(orjson.dumps(events))
    return loaded


def _alone(raw: dict[str, Any], *, checked: bool) -> SubmittedEvent | ValidationError:
    """An item validated alone, as the batch validated each before (#12)."""
    try:
        return http._submitted(raw) if checked else SubmittedEvent.model_validate(raw)
    except ValidationError as exc:
        return exc


def _same(a: SubmittedEvent | ValidationError, b: SubmittedEvent | ValidationError) -> None:
    if isinstance(a, ValidationError) or isinstance(b, ValidationError):
        assert isinstance(a, ValidationError)
        assert isinstance(b, ValidationError)
        assert field_errors(a.errors()) == field_errors(b.errors())
        return
    assert type(a) is type(b)
    assert a.__dict__ == b.__dict__
    assert a.__pydantic_fields_set__ == b.__pydantic_fields_set__


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=_ITEMS, checked=st.booleans())
def test_the_items_of_a_batch_are_what_each_is_alone(
    kinds: list[tuple[str, str]], checked: bool
) -> None:
    raws = _document(kinds)
    together = http._submitted_items(raws, checked=checked)
    assert len(together) == len(raws)
    for raw, item in zip(raws, together, strict=True):
        _same(item, _alone(raw, checked=checked))
        # and the model itself is the judge: the same event, or the same errors
        _same(item, _alone(raw, checked=False))


def _context() -> IntakeContext:
    return IntakeContext(
        store=InMemoryEventStore(),
        clock=FixedClock(_NOW),
        decider=RecordedDecider(),
        topic="t",
        keys=InMemoryClientKeyStore(),
        hash_key=b"k" * 32,
    )


async def _item_by_item(
    ctx: IntakeContext, caller: Principal, raws: list[dict[str, Any]], *, checked: bool
) -> list[dict[str, Any]]:
    """The batch route as it was before (#12): each item validated alone, then submitted."""
    parsed: list[SubmittedEvent] = []
    slots: list[int | dict[str, Any]] = []
    for raw in raws:
        try:
            item = http._submitted(raw) if checked else SubmittedEvent.model_validate(raw)
        except ValidationError as exc:
            slots.append(validation_problem(field_errors(exc.errors())).body())
            continue
        forbidden = type_forbidden(item.type, caller)
        if forbidden is not None:
            slots.append(forbidden.body())
            continue
        parsed.append(item)
        slots.append(len(parsed) - 1)
    outcomes = await submit_events(
        ctx,
        parsed,
        submitted_by=http._actor(caller),
        submitter=http._submitter(caller),
        checked=checked,
    )
    results = [s if isinstance(s, dict) else http._item_body(outcomes[s]) for s in slots]
    return [{**result, "index": index} for index, result in enumerate(results)]


async def _stored(ctx: IntakeContext) -> list[Any]:
    """Every event the test's subjects' streams hold, as JSON."""
    names = [f"{prefix}{c}" for c in _CLIENT_IDS for prefix in ("client-", "refusals-")]
    names += ["product-P-1", "refusals/product-P-1"]
    stored = [await ctx.store.read_stream(name, from_version=1, limit=1000) for name in names]
    return [_unsealed(s.event.model_dump(mode="json")) for events in stored for s in events]


def _unsealed(value: Any) -> Any:
    # a sealed value has a random nonce: compared as "sealed", the rest exactly
    if isinstance(value, dict):
        return {k: _unsealed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unsealed(v) for v in value]
    return "sealed" if isinstance(value, str) and value.startswith(SEALED_PREFIX) else value


async def _route(
    ctx: IntakeContext, caller: Principal, raws: list[dict[str, Any]], *, checked: bool
) -> list[dict[str, Any]]:
    scope: dict[str, Any] = {"type": "http", "method": "POST", "headers": []}
    if checked:
        scope[PARSED_BODY] = {"events": raws}
    batch = http.BatchRequest.model_validate({"events": raws})
    answer = await http.post_batch(ctx, caller, batch, Request(scope))
    results: list[dict[str, Any]] = orjson.loads(bytes(answer.body))["results"]
    return results


def _numbered_ids(count: int) -> list[uuid.UUID]:
    # the ids drawn for items sent without one, the same in both runs (else UUIDv4s)
    return [uuid.UUID(int=n + 1, version=4) for n in range(count)]


@pytest.mark.timeout(120)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kinds=_ITEMS, checked=st.booleans(), admin=st.booleans())
def test_a_batch_answers_each_item_as_when_each_was_validated_alone(
    kinds: list[tuple[str, str]], checked: bool, admin: bool
) -> None:
    raws = _document(kinds)
    caller = _ADMIN if admin else _BRANCH
    with mock.patch.object(submit, "random_uuids", _numbered_ids):
        # before: each payload validated alone too
        with mock.patch.object(submit, "_checked_payloads", return_value={}):
            before = asyncio.run(_item_by_item(old := _context(), caller, raws, checked=checked))
        now = asyncio.run(_route(new := _context(), caller, raws, checked=checked))
    assert now == orjson.loads(orjson.dumps(before))
    assert asyncio.run(_stored(new)) == asyncio.run(_stored(old))
    assert [r["index"] for r in now] == list(range(len(raws)))


@pytest.mark.parametrize("number", range(len(EXAMPLE_JOURNEY) + len(EXAMPLE_SHELF)))
def test_a_payloads_data_is_its_model_dump(number: int) -> None:
    step = [*EXAMPLE_JOURNEY, *EXAMPLE_SHELF][number]
    payload = parse_payload(step.type, dict(step.data))
    data = _payload_data(payload)
    dumped = payload.model_dump(mode="json", exclude_none=True)
    assert data == dumped
    assert orjson.dumps(data) == orjson.dumps(dumped)


@pytest.mark.timeout(30)
async def test_a_refused_item_is_named_by_its_index_and_field_and_aborts_no_other() -> None:
    raws = _document([("registered", "C-1"), ("not a time", "C-2"), ("registered", "C-3")])
    results = await _route(_context(), _BRANCH, raws, checked=True)
    assert [r["status"] for r in results] == [202, 422, 202]
    assert [r["index"] for r in results] == [0, 1, 2]
    assert [e["field"] for e in results[1]["errors"]] == ["occurred_at"]
