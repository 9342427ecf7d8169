"""aiokafka's private attributes this project reads (``kafka.aiokafka_private``, #12) are
still there in the installed aiokafka, whose version is one whose source was read. An upgrade
that renames or drops any of them fails here, not silently in production (where a start cut
short would then leak its bootstrap connection again, and a cut stop its client)."""

from __future__ import annotations

import inspect
import logging

import aiokafka
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.consumer.fetcher import Fetcher
from aiokafka.consumer.group_coordinator import GroupCoordinator
from aiokafka.producer.message_accumulator import MessageBatch

from branchline_shared.kafka import aiokafka_private
from branchline_shared.kafka.aiokafka_private import (
    CHECKED_VERSIONS,
    missing_private_parts,
    private_parts,
)

pytestmark = pytest.mark.unit

BOOTSTRAP = "127.0.0.1:9"  # never connected to: the clients are made, not started


def test_the_installed_aiokafka_is_a_version_whose_private_parts_were_read() -> None:
    assert aiokafka.__version__ in CHECKED_VERSIONS, (
        f"aiokafka {aiokafka.__version__}: read its source for what "
        "branchline_shared/kafka/aiokafka_private.py uses, then add the version"
    )


async def test_every_client_kind_still_has_the_private_parts_read() -> None:
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=BOOTSTRAP)
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id="g")
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP, request_timeout_ms=1234)
    try:
        for client in (producer, consumer, admin):
            assert missing_private_parts(client) == [], type(client).__name__
            parts = private_parts(client)
            assert parts is not None
            assert parts.request_timeout_s is not None
            assert parts.bootstrapped is not None
            assert parts.bootstrapped() is False  # not started: no bootstrap yet
        assert private_parts(admin).request_timeout_s == 1.234  # type: ignore[union-attr]
        assert private_parts(consumer).close_rest is not None  # type: ignore[union-attr]
        assert private_parts(producer).close_rest is not None  # type: ignore[union-attr]
        assert private_parts(admin).close_rest is None  # type: ignore[union-attr]
    finally:
        # never started: nothing to close, but aiokafka warns of an unstarted unclosed one
        await producer.stop()
        await consumer.stop()
        await admin.close()
    # a group coordinator is made by a consumer's start: its tasks are read from its source
    source = inspect.getsource(GroupCoordinator)
    for name in ("_coordination_task", "_heartbeat_task", "_commit_refresh_task"):
        assert f"self.{name} = " in source, name
    # so is a fetcher, whose tasks a stop that ended short leaves running
    source = inspect.getsource(Fetcher)
    for name in aiokafka_private._FETCHER_TASKS:
        assert f"self.{name} = " in source, name
    # a batch's drain waiter, failed with it by a producer's close_rest and retrieved there
    assert "self._drain_waiter = " in inspect.getsource(MessageBatch)


async def test_a_stand_in_has_no_private_parts() -> None:
    class Fake:
        async def start(self) -> None: ...

    assert private_parts(Fake()) is None


async def test_a_part_an_aiokafka_lacks_is_done_without_and_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=BOOTSTRAP, group_id="g")
    inner = consumer._client
    saved = inner._sync_task
    del inner._sync_task  # as an aiokafka that renamed it
    aiokafka_private._warned.clear()
    try:
        with caplog.at_level(logging.WARNING, logger=aiokafka_private.__name__):
            first = private_parts(consumer)
            again = private_parts(consumer)
    finally:
        inner._sync_task = saved
        aiokafka_private._warned.clear()
        await consumer.stop()
    assert first is not None
    assert first.bootstrapped is None
    assert again is not None
    assert again.bootstrapped is None
    said = [r for r in caplog.records if "_sync_task" in r.getMessage()]
    assert len(said) == 1
