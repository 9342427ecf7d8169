"""The write path builds each accepted envelope without validating it a second time (#12):
it must be the very object ``RecordedEvent(...)`` makes from the same validated submission."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from branchline_intake.application.submit import SOURCE, _envelope
from branchline_shared.events.catalogue import CATALOGUE_VERSION
from branchline_shared.events.envelope import (
    RecordedEvent,
    SubmittedEvent,
    Submitter,
    subject_stream_id,
)

pytestmark = pytest.mark.unit

_NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)

SUBMISSIONS: list[dict[str, Any]] = [
    {
        "type": "client.registered",
        "occurred_at": "2026-12-03T17:59:00+08:00",
        "client_id": "C-1",
        "branch_id": "BR-1",
        "channel": "walk_in",
        "actor": {"id": "s-1", "role": "teller"},
        "data": {"client_type": "individual", "rm_id": "rm-1"},
    },
    {
        "event_id": str(uuid.uuid4()),
        "type": "client.consent_granted",
        "occurred_at": "2026-12-02T09:00:00Z",
        "client_id": "C-2",
        "actor": {"id": "s-2", "role": "teller"},
        "correlation_id": "corr-1",
        "causation_id": "cause:2",
        "expected_version": 3,
        "late_entry": {"reason": "  the queue machine was down  "},
        "data": {"purposes": ["service"]},
    },
    {
        "type": "product.approved",
        "occurred_at": "2026-12-03T04:00:00-05:00",
        "product_id": "P-9",
        "actor": {"id": "gov-1", "role": "product_governance"},
        "data": {"anything": [1, "two", None]},
    },
    {
        "type": "staff.qualified",
        "occurred_at": "2026-12-03T10:00:00.123456+00:00",
        "staff_id": "st-4",
        "actor": {"id": "hr-1", "role": "hr"},
    },
]


@pytest.mark.parametrize("submitted", SUBMISSIONS, ids=lambda s: str(s["type"]))
@pytest.mark.parametrize("submitter", [None, Submitter(sub="q-1", roles=("branch_system",))])
def test_the_built_envelope_is_the_validated_one(
    submitted: dict[str, Any], submitter: Submitter | None
) -> None:
    item = SubmittedEvent.model_validate(submitted)
    data = dict(item.data)
    event_id = item.event_id or uuid.uuid4()  # the item's own, or a new one drawn for it
    built = _envelope(item, data, _NOW, submitter, event_id)
    validated = RecordedEvent(
        event_id=event_id,
        type=item.type,
        schema_version=CATALOGUE_VERSION[item.type],
        occurred_at=item.occurred_at,
        recorded_at=_NOW,
        source=SOURCE,
        actor=item.actor,
        client_id=item.client_id,
        product_id=item.product_id,
        staff_id=item.staff_id,
        branch_id=item.branch_id,
        channel=item.channel,
        stream_id=subject_stream_id(item.subject, item.subject_id),
        stream_version=0,
        correlation_id=item.correlation_id,
        causation_id=item.causation_id,
        late_entry=item.late_entry,
        data=data,
        submitted_by=submitter,
    )
    assert built == validated
    assert built.model_fields_set == validated.model_fields_set
    assert built.model_dump_json() == validated.model_dump_json()
    assert built.occurred_at.utcoffset() == timedelta(0)  # in UTC, as validation makes it
    assert built.occurred_at == item.occurred_at
    assert built.subject is item.subject
    assert built.subject_id == item.subject_id
    read_back = RecordedEvent.model_validate(built.model_dump(mode="json"))
    assert read_back.model_dump() == built.model_dump()
