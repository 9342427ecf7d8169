"""Which process of a partitioned rebuild applies which event (#12, ``--processes N``): every
type of the catalogue classified, once, by its subject; messages routed by their client."""

from __future__ import annotations

import uuid

import orjson
import pytest

from branchline_followup.application.rebuild_routes import (
    BY_CLIENT,
    BY_EVERY_PROCESS,
    SHARED_WRITER,
    partition_of,
    route_of,
)
from branchline_shared.events.catalogue import SUBJECT_OF, EventType
from branchline_shared.events.envelope import Subject


def test_every_type_of_the_catalogue_is_classified_once() -> None:
    # a type added to the catalogue fails here until it is classified in rebuild_routes
    assert {t.value for t in EventType} == BY_CLIENT | BY_EVERY_PROCESS
    assert not BY_CLIENT & BY_EVERY_PROCESS


def test_the_events_of_a_client_go_to_its_process_and_no_other() -> None:
    # an event of no client applied by one process only would miss the others' clients (a
    # rating's re-rating, a gift's escalation); a client's by every process, written N times
    for event_type in EventType:
        by_client = SUBJECT_OF[event_type.value] is Subject.CLIENT
        assert (event_type.value in BY_CLIENT) is by_client, event_type


def _message(event_type: str, **subject: str) -> bytes:
    return orjson.dumps({"event_id": str(uuid.uuid4()), "type": event_type, **subject})


@pytest.mark.parametrize("parts", [2, 3, 5])
def test_a_message_goes_to_its_clients_process_or_to_every_process(parts: int) -> None:
    clients = [f"C-{n:05d}" for n in range(200)]
    routed = [route_of(_message("visit.arrived", client_id=c), parts) for c in clients]
    assert routed == [partition_of(c, parts) for c in clients]
    assert set(routed) == set(range(parts))  # the clients spread over every process
    assert route_of(_message("product.rerated", product_id="P-1"), parts) is None
    assert route_of(_message("staff.gift_recorded", staff_id="rm-1"), parts) is None


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"not json",
        b"[1, 2]",
        _message("no.such_type", client_id="C-1"),
        _message("visit.arrived"),
    ],
    # named, not by their random event ids: every xdist worker collects the same tests
    ids=["none", "not-json", "not-an-object", "unknown-type", "no-client"],
)
def test_what_cannot_be_routed_goes_to_the_shared_writer_alone(value: bytes | None) -> None:
    # it skips it, as the live worker dead-lettered it
    assert route_of(value, 4) == SHARED_WRITER


def test_one_process_has_every_client() -> None:
    assert {partition_of(f"C-{n}", 1) for n in range(50)} == {0}
