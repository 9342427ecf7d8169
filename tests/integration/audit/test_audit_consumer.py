"""The ledger consumer on a real broker: every event once, in a gap-free chain, poison to the
dead-letter topic with the reason (decisions 2, 3 and 6)."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from branchline_audit.application.context import AuditContext
from branchline_audit.application.verifying import verify_ledger
from branchline_audit.bootstrap import build_consumer, ledger_probe
from branchline_shared.clock import SystemClock
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.kafka.producer import make_producer
from branchline_shared.kafka.topics import declare_topics, ensure_topics
from branchline_shared.kafka.wire import encode_event
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import audit_context, event, quick_settings
from tests.support.kafka import produce, read_all
from tests.support.stack import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


@contextlib.asynccontextmanager
async def consumer_running(
    settings: BranchlineSettings, audit: AuditContext
) -> AsyncIterator[None]:
    producer = make_producer(settings, client_id="audit-test-dlq")
    await producer.start()
    pool = audit.ledger.pool  # type: ignore[attr-defined]
    consumer = build_consumer(
        settings, audit.ledger, producer, SystemClock(), answering=ledger_probe(pool)
    )
    task = asyncio.create_task(consumer.run())
    try:
        await asyncio.wait_for(consumer.started.wait(), timeout=20)
        yield
    finally:
        task.cancel()  # like a crash: whatever was not committed is delivered again
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await producer.stop()


@pytest.fixture
async def ready(
    settings: BranchlineSettings,
) -> AsyncIterator[tuple[BranchlineSettings, AuditContext]]:
    s = quick_settings(settings)
    await ensure_topics(s.kafka_bootstrap, declare_topics(s).all())
    async with audit_context(s) as audit:
        yield s, audit


async def send(settings: BranchlineSettings, topic: str, events: Sequence[dict[str, Any]]) -> None:
    await produce(
        settings.kafka_bootstrap,
        topic,
        [(e["client_id"].encode(), encode_event(e)) for e in events],
    )


def envelopes(count: int, start: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(start)
    return [
        RecordedEvent.model_validate(
            event(n, client_id=f"C-{rng.randrange(8)}", event_type="visit.arrived")
        ).model_dump(mode="json")
        for n in range(start, start + count)
    ]


async def ledger_ids(audit: AuditContext) -> list[str]:
    return [str(e.entry.event["event_id"]) async for e in audit.ledger.scan_stored()]


async def test_events_of_both_topics_including_refusals_and_followups_are_recorded_once(
    ready: tuple[BranchlineSettings, AuditContext],
) -> None:
    settings, audit = ready
    topics = declare_topics(settings)
    refusal = RecordedEvent.model_validate(
        event(1, event_type="rule.violation_refused", data={"rule": "D-05", "reason": "R4 > C2"})
    ).model_dump(mode="json")
    followup = RecordedEvent.model_validate(
        event(2, event_type="followup.task_created", data={"task_id": "T-1"})
    ).model_dump(mode="json")
    async with consumer_running(settings, audit):
        await send(settings, topics.intake_events.name, [refusal, refusal, refusal])
        await send(settings, topics.followup_events.name, [followup, followup])
        await eventually(lambda: _size_is(audit, 2))
        await asyncio.sleep(0.5)  # duplicates still in flight would land now
    assert sorted(await ledger_ids(audit)) == sorted([refusal["event_id"], followup["event_id"]])
    types = {e.entry.event["type"] async for e in audit.ledger.scan_stored()}
    assert types == {"rule.violation_refused", "followup.task_created"}


async def _size_is(audit: AuditContext, size: int) -> bool:
    return await audit.ledger.size() == size


async def test_a_consumer_restarted_mid_stream_leaves_no_gap_and_no_duplicate(
    ready: tuple[BranchlineSettings, AuditContext],
) -> None:
    settings, audit = ready
    topic = declare_topics(settings).intake_events.name
    events = envelopes(300)
    async with consumer_running(settings, audit):
        await send(settings, topic, events[:200])
        await eventually(lambda: _size_is_at_least(audit, 20))
    stopped_at = await audit.ledger.size()
    await send(settings, topic, events[200:])
    # redelivery of what was already recorded, as Kafka may do
    await send(settings, topic, events[:50])
    async with consumer_running(settings, audit):
        await eventually(lambda: _size_is(audit, 300), within=40)
        await asyncio.sleep(0.5)
    assert stopped_at < 300
    assert sorted(await ledger_ids(audit)) == sorted(e["event_id"] for e in events)
    verdict = await verify_ledger(
        audit.ledger, audit.checkpoints, verifier=audit.signer.verifier(), origin=audit.origin
    )
    assert verdict.ok
    assert verdict.entries == 300


async def _size_is_at_least(audit: AuditContext, size: int) -> bool:
    return await audit.ledger.size() >= size


async def test_a_poison_message_goes_to_the_dead_letter_topic_with_the_reason(
    ready: tuple[BranchlineSettings, AuditContext],
) -> None:
    settings, audit = ready
    topics = declare_topics(settings)
    good = envelopes(1, start=900)
    async with consumer_running(settings, audit):
        await produce(settings.kafka_bootstrap, topics.intake_events.name, [(b"C-1", b"{not json")])
        await send(settings, topics.intake_events.name, good)
        await eventually(lambda: _size_is(audit, 1))
    dead = await read_all(settings.kafka_bootstrap, topics.audit_consumer_dlq.name, expect=1)
    assert len(dead) == 1
    assert dead[0].value == b"{not json"
    headers = dict(dead[0].headers)
    assert b"not a Branchline event envelope" in headers["dlq_reason"]
    assert headers["dlq_consumer"] == b"audit-consumer"
    assert await ledger_ids(audit) == [good[0]["event_id"]]


async def _appended_together(audit: AuditContext) -> dict[Any, set[str]]:
    """Event ids by ``appended_at``: one ledger append (one transaction) stamps one time."""
    together: dict[Any, set[str]] = {}
    async for stored in audit.ledger.scan_stored():
        together.setdefault(stored.entry.appended_at, set()).add(
            str(stored.entry.event["event_id"])
        )
    return together


async def test_a_fetched_batch_of_several_partitions_and_topics_is_written_in_one_transaction(
    ready: tuple[BranchlineSettings, AuditContext],
) -> None:
    """#12: what one fetch returned (every partition of both topics) is one ledger append;
    duplicates inside the batch and redelivered later are stored once."""
    settings, audit = ready
    topics = declare_topics(settings)
    intake = envelopes(60, start=1000)
    followups = [
        RecordedEvent.model_validate(
            event(n, client_id=f"C-{n % 8}", event_type="followup.task_created")
        ).model_dump(mode="json")
        for n in range(40)
    ]
    # Everything is on the broker before the consumer starts: its first fetch holds it all.
    await send(settings, topics.intake_events.name, [*intake, *intake[:10]])
    await send(settings, topics.followup_events.name, followups)
    async with consumer_running(settings, audit):
        await eventually(lambda: _size_is(audit, 100), within=40)
    await send(settings, topics.intake_events.name, intake[:5])  # redelivered after a commit
    async with consumer_running(settings, audit):
        await asyncio.sleep(1.0)  # a redelivery in flight would land now
    ids = await ledger_ids(audit)
    assert sorted(ids) == sorted(e["event_id"] for e in intake + followups)
    groups = await _appended_together(audit)
    followup_ids = {e["event_id"] for e in followups}
    intake_ids = {e["event_id"] for e in intake}
    # one append held events of both topics (so of several partitions): the per-partition
    # transactions of before could not
    assert any(group & followup_ids and group & intake_ids for group in groups.values())
    assert len(groups) < len(ids)


async def test_a_poison_event_in_a_batch_fails_only_itself(
    ready: tuple[BranchlineSettings, AuditContext],
) -> None:
    """An event that decodes but that the ledger cannot store (a NUL character, which
    PostgreSQL's jsonb refuses) in the middle of a batch: the batch is narrowed down, the
    poison goes to the dead-letter topic with the reason, every other event is recorded once,
    and the chain verifies."""
    settings, audit = ready
    topics = declare_topics(settings)
    good = envelopes(40, start=2000)
    poison = RecordedEvent.model_validate(
        event(7, client_id="C-3", data={"note": "a\u0000b"})
    ).model_dump(mode="json")
    await send(settings, topics.intake_events.name, [*good[:25], poison, *good[25:]])
    async with consumer_running(settings, audit):
        await eventually(lambda: _size_is(audit, 40), within=40)
        dead = await read_all(settings.kafka_bootstrap, topics.audit_consumer_dlq.name, expect=1)
        await asyncio.sleep(0.5)  # a second dead letter or entry in flight would land now
    assert sorted(await ledger_ids(audit)) == sorted(e["event_id"] for e in good)
    assert len(dead) == 1
    headers = dict(dead[0].headers)
    assert poison["event_id"].encode() in (dead[0].value or b"")
    assert b"handler failed" in headers["dlq_reason"]
    assert headers["dlq_consumer"] == b"audit-consumer"
    verdict = await verify_ledger(
        audit.ledger, audit.checkpoints, verifier=audit.signer.verifier(), origin=audit.origin
    )
    assert verdict.ok
    assert verdict.entries == 40


async def test_an_event_with_a_number_the_ledger_cannot_verify_is_dead_lettered(
    ready: tuple[BranchlineSettings, AuditContext],
) -> None:
    """A float JCS writes as an integer beyond 2**53 (``1e16``) or that jsonb rewrites
    (``1e300``) was appended and never verified again. Now the event is refused before
    anything is appended and dead-lettered with the reason (where, not the value: D-04),
    every other event is recorded, numbers within ±(2**53 - 1) included, and the chain
    verifies through the real jsonb column."""
    settings, audit = ready
    topics = declare_topics(settings)
    good = envelopes(30, start=3000)
    edge = RecordedEvent.model_validate(
        event(8, client_id="C-4", data={"a": 2.0**53 - 1, "b": 0.1, "c": 1e-7, "d": -2.5})
    ).model_dump(mode="json")
    poisons = [
        RecordedEvent.model_validate(event(n, client_id="C-5", data=data)).model_dump(mode="json")
        for n, data in ((9, {"amount": 1e16}), (10, {"rates": [0.5, {"x": 1e300}]}))
    ]
    await send(
        settings,
        topics.intake_events.name,
        [*good[:10], poisons[0], *good[10:20], edge, poisons[1], *good[20:]],
    )
    async with consumer_running(settings, audit):
        await eventually(lambda: _size_is(audit, 31), within=40)
        dead = await read_all(settings.kafka_bootstrap, topics.audit_consumer_dlq.name, expect=2)
        await asyncio.sleep(0.5)  # a third dead letter or entry in flight would land now
    assert sorted(await ledger_ids(audit)) == sorted(e["event_id"] for e in [*good, edge])
    assert len(dead) == 2
    reasons: dict[str, str] = {}
    for message in dead:
        headers = dict(message.headers)
        assert headers["dlq_consumer"] == b"audit-consumer"
        for poison in poisons:
            if poison["event_id"].encode() in (message.value or b""):
                reasons[poison["event_id"]] = headers["dlq_reason"].decode()
    assert set(reasons) == {p["event_id"] for p in poisons}
    assert "the number at data.amount is outside ±(2**53 - 1)" in reasons[poisons[0]["event_id"]]
    assert "the number at data.rates.1.x is outside" in reasons[poisons[1]["event_id"]]
    assert not any("1e" in r or "10000000000000000" in r for r in reasons.values())
    verdict = await verify_ledger(
        audit.ledger, audit.checkpoints, verifier=audit.signer.verifier(), origin=audit.origin
    )
    assert verdict.ok, verdict.reason
    assert verdict.entries == 31
    data = [
        e.entry.event["data"]
        async for e in audit.ledger.scan_stored()
        if e.entry.event["event_id"] == edge["event_id"]
    ]
    assert data == [{"a": 2**53 - 1, "b": 0.1, "c": 1e-7, "d": -2.5}]
    assert type(data[0]["a"]) is int  # 9007199254740991.0 as JCS writes it: the same number


@pytest.mark.chaos
async def test_the_consumer_waits_out_a_database_outage_and_loses_nothing(
    settings: BranchlineSettings,
) -> None:
    """PostgreSQL unreachable mid-stream: the consumer retries without committing offsets;
    once the database is back every event is in the ledger once and the chain verifies."""
    from urllib.parse import urlsplit, urlunsplit

    from tests.support.proxy import cuttable

    target = urlsplit(settings.audit_database_url)
    async with cuttable(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        via_proxy = urlunsplit(target._replace(netloc=f"{target.username}@127.0.0.1:{proxy.port}"))
        s = quick_settings(settings.model_copy(update={"audit_database_url": via_proxy}))
        await ensure_topics(s.kafka_bootstrap, declare_topics(s).all())
        topic = declare_topics(s).intake_events.name
        async with audit_context(s) as audit, consumer_running(s, audit):
            first, second = envelopes(10), envelopes(10, start=10)
            await send(s, topic, first)
            await eventually(lambda: _ledger_has(audit, 10), within=30)
            retries_before = _retries("audit-consumer")
            await proxy.cut()
            await send(s, topic, second)
            await eventually(lambda: _more(_retries("audit-consumer"), retries_before), within=20)
            assert len(await _ids_when_back(proxy, audit)) <= 10  # nothing written meanwhile
            await eventually(lambda: _ledger_has(audit, 20), within=60)
            ids = await ledger_ids(audit)
            verdict = await verify_ledger(
                audit.ledger,
                audit.checkpoints,
                verifier=audit.signer.verifier(),
                origin=audit.origin,
            )
    assert sorted(ids) == sorted(e["event_id"] for e in first + second)
    assert verdict.ok


def _retries(consumer: str) -> float:
    from prometheus_client import REGISTRY

    value = REGISTRY.get_sample_value("branchline_consumer_retries_total", {"consumer": consumer})
    return value or 0.0


async def _more(value: float, than: float) -> bool:
    return value > than


async def _ids_when_back(proxy: Any, audit: AuditContext) -> list[str]:
    """Restore the database and read the ledger at once, before the consumer catches up."""
    await proxy.restore()
    return await ledger_ids(audit)


async def _ledger_has(audit: AuditContext, count: int) -> bool:
    return len(await ledger_ids(audit)) >= count
