"""D-04 erasure on the real stack: restricted at once, then destroyed (crypto-shredded) by the
scheduled job, recorded, and afterwards unreadable everywhere while the audit chain verifies.

One client keeps a relationship (business, no closure: retention applies, so their data stays
restricted, not destroyed); another never did business (no retention: destroyed at once).
Distinctive personal values are planted, then every raw row of every database, every Kafka
message, every captured log line, the audit export and every API answer and problem body is
searched for them."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from branchline_followup.erasure_operations import shred_due_once
from branchline_shared.crypto.keystore import KeyDestroyed, PostgresClientKeyStore
from branchline_shared.crypto.sealing import MasterKey, is_sealed
from branchline_shared.events.catalogue import ShredBasis
from branchline_shared.kafka.topics import declare_topics
from branchline_shared.logging_setup import JsonLineFormatter
from branchline_shared.postgres.pool import open_pool
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.privacy.privacy_support import (
    PLANTED_FIELDS,
    PLANTED_VALUES,
    PrivacyStack,
    at,
    audit_running,
    planted_journey,
    privacy_stack,
    submission,
)
from tests.support.stack import Infra, eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

KEEP = "C-KEEP-1"  # did business, relationship lasts: restricted, not yet destroyed
CLOSED = "C-CLOSED-1"  # did business, account closed: destroyed when retention has run
HELD = "C-HELD-1"  # never did business, but under legal hold: never destroyed while it stands
GONE = "C-GONE-1"  # never did business: no retention applies, destroyed at once
LATER_TEXT = "Qiaolian-later-note-about-her-divorce"
PROBLEM_PLANT = "Zhuang Qiaolian Problem"
ALL_PLANTED = (*PLANTED_VALUES, LATER_TEXT, PROBLEM_PLANT)


def business(client_id: str) -> list[dict[str, Any]]:
    return [
        submission(client_id, "visit.arrived", at(10), {"visit_id": "V-1"}),
        submission(
            client_id,
            "visit.needs_confirmed",
            at(11),
            {"visit_id": "V-1", "category": "payment"},
        ),
        submission(
            client_id,
            "visit.business_handled",
            at(12),
            {
                "visit_id": "V-1",
                "counter": "counter-3",
                "started_at": at(11),
                "ended_at": at(12),
            },
        ),
    ]


def erasure(client_id: str) -> dict[str, Any]:
    return submission(
        client_id,
        "client.erasure_requested",
        at(20),
        {"reason": "client asked by letter"},
    )


async def planted_refusals(stack: PrivacyStack) -> list[str]:
    """Invalid input carrying personal values: the problem bodies must not echo them."""
    bad = [
        submission(
            KEEP,
            "client.personal_data_recorded",
            at(5),
            {"fields": {PROBLEM_PLANT: "x"}, "purpose": "service"},
        ),
        submission(
            KEEP,
            "client.registered",
            at(5),
            {"client_type": PROBLEM_PLANT, "rm_id": "rm-7"},
        ),
        {
            **submission(KEEP, "visit.arrived", PROBLEM_PLANT, {"visit_id": "V-9"}),
            "event_id": PROBLEM_PLANT,
        },
        submission(
            KEEP,
            "product.terms_confirmed",
            at(5),
            {"product_id": "P-1", "terms": {PROBLEM_PLANT: "3%"}},
        ),
    ]
    bodies: list[str] = []
    for event in bad:
        response = await stack.intake.post("/v1/events", json=event)
        assert response.status_code == 422, response.text
        bodies.append(response.text)
    batch = await stack.intake.post("/v1/events:batch", json={"events": bad})
    bodies.append(batch.text)
    return bodies


async def all_rows(infra: Infra, database_url: str) -> str:
    """Every row of every table of every schema of one database, as text."""
    conn = await asyncpg.connect(database_url)
    try:
        tables = await conn.fetch(
            "SELECT schemaname, tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
        dumps: list[str] = []
        for t in tables:
            rows = await conn.fetch(
                f'SELECT t::text AS row FROM "{t["schemaname"]}"."{t["tablename"]}" t'
            )
            dumps.extend(r["row"] for r in rows)
        return "\n".join(dumps)
    finally:
        await conn.close()


async def all_messages(settings: BranchlineSettings) -> bytes:
    """Every message (key, value, headers) of every declared topic, to its end."""
    topics = declare_topics(settings).all()
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False
    )
    await consumer.start()
    chunks: list[bytes] = []
    try:
        for topic in topics:
            parts = consumer.partitions_for_topic(topic.name) or set()
            if not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(topic.name) or set()
            tps = [TopicPartition(topic.name, p) for p in parts]
            if not tps:
                continue
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            pending = {tp for tp in tps if ends[tp] > 0}
            while pending:
                batch = await consumer.getmany(*pending, timeout_ms=500)
                for tp, records in batch.items():
                    for r in records:
                        chunks.extend([r.key or b"", r.value or b""])
                        chunks.extend(v for _, v in r.headers or ())
                        if r.offset + 1 >= ends[tp]:
                            pending.discard(tp)
    finally:
        await consumer.stop()
    return b"\n".join(chunks)


def assert_nowhere(text: str | bytes, where: str, values: tuple[str, ...] = ALL_PLANTED) -> None:
    data = text.encode() if isinstance(text, str) else text
    for value in values:
        assert value.encode() not in data, f"{value!r} readable in {where}"
        assert orjson.dumps(value)[1:-1] not in data, f"{value!r} (JSON-escaped) in {where}"


async def test_erasure_restricts_at_once_then_shredding_destroys_everywhere(
    infra: Infra,
    settings: BranchlineSettings,
    tokens: TokenFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    quick = settings.model_copy(
        update={"privacy_shred_interval_s": 0.3, "audit_checkpoint_interval_s": 0.5}
    )
    answers: list[str] = []
    async with contextlib.AsyncExitStack() as running:
        audit = await running.enter_async_context(audit_running(quick, tokens))
        quick = quick.model_copy(
            update={"privacy_legal_holds_url": f"{audit.base_url}/v1/audit/legal-holds"}
        )
        stack = await running.enter_async_context(privacy_stack(quick, tokens))
        for event in (
            planted_journey(KEEP)
            + business(KEEP)
            + planted_journey(GONE)
            + planted_journey(CLOSED)
            + business(CLOSED)
            + planted_journey(HELD)
        ):
            await stack.send(event)
        hold = await audit.post(
            "/v1/audit/legal-holds",
            json={"client_id": HELD, "hold_id": "LH-1", "reason": "litigation"},
        )
        assert hold.status_code in (200, 201), hold.text
        await stack.send(
            submission(CLOSED, "client.account_closed", at(15), {"reason": "client_request"})
        )
        answers.extend(await planted_refusals(stack))
        for client in (KEEP, GONE, CLOSED, HELD):
            await stack.send(erasure(client))

        # Restricted at once: intake serves none of KEEP's personal values, not even sealed.
        stream = await stack.intake.get(f"/v1/streams/client-{KEEP}/events")
        assert stream.status_code == 200
        answers.append(stream.text)
        by_type = {e["type"]: e["data"] for e in stream.json()["events"]}
        assert by_type["client.personal_data_recorded"]["fields"] == dict.fromkeys(
            PLANTED_FIELDS, "[restricted]"
        )
        assert by_type["complaint.received"]["summary"] == "[restricted]"
        assert by_type["client.erasure_requested"]["reason"] == "[restricted]"
        assert by_type["visit.business_handled"]["visit_id"] == "V-1"  # not personal

        # Later personal free text: stored sealed (never clear) and restricted at once.
        later = submission(
            KEEP,
            "complaint.received",
            at(30),
            {"complaint_id": "CP-2", "severity": "general", "summary": LATER_TEXT},
        )
        await stack.send(later)
        # New personal data after the request: refused (D-04).
        refused = await stack.intake.post(
            "/v1/events",
            json=submission(
                KEEP,
                "client.personal_data_recorded",
                at(31),
                {"fields": {"phone": "+86 100"}, "purpose": "service"},
            ),
        )
        assert refused.status_code == 409
        assert refused.json()["rule"] == "D-04"
        answers.append(refused.text)
        stream = await stack.intake.get(
            f"/v1/streams/client-{KEEP}/events", params={"from_version": 9}
        )
        answers.append(stream.text)
        assert [e["data"].get("summary") for e in stream.json()["events"]] == ["[restricted]"]

        # The access endpoint: restricted (409 D-04) for KEEP once followup applied the request.
        async def restricted() -> httpx.Response | None:
            r = await stack.followup.get(
                f"/v1/clients/{KEEP}/personal-data", params={"purpose": "check"}
            )
            return r if r.status_code == 409 else None

        answer = await eventually(restricted)
        assert answer.json()["rule"] == "D-04"
        answers.append(answer.text)

        # GONE is destroyed by the scheduled job: 410 from then on.
        async def gone() -> httpx.Response | None:
            r = await stack.followup.get(
                f"/v1/clients/{GONE}/personal-data", params={"purpose": "check"}
            )
            return r if r.status_code == 410 else None

        answer = await eventually(gone)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["rule"] == "D-04"
        answers.append(answer.text)

        stream = await stack.intake.get(f"/v1/streams/client-{GONE}/events")
        answers.append(stream.text)
        by_type = {e["type"]: e["data"] for e in stream.json()["events"]}
        assert by_type["client.personal_data_recorded"]["fields"] == dict.fromkeys(
            PLANTED_FIELDS, "[shredded]"
        )
        too_late = await stack.intake.post(
            "/v1/events",
            json=submission(
                GONE,
                "complaint.received",
                at(30),
                {"complaint_id": "CP-3", "severity": "general", "summary": LATER_TEXT},
            ),
        )
        assert too_late.status_code == 409, too_late.text
        assert too_late.json()["rule"] == "D-04"
        answers.append(too_late.text)

        # Followup: a note about a shredded client cannot be sealed any more (409 D-04, nothing
        # recorded); about a restricted one it is sealed like every note.
        async def first_open_task(client_id: str) -> dict[str, Any]:
            r = await stack.followup.get(
                "/v1/followups", params={"client_id": client_id, "status": "open"}
            )
            task: dict[str, Any] = r.json()["items"][0]
            return task

        task = await first_open_task(GONE)
        with_note = await stack.followup.post(
            f"/v1/followups/{task['id']}/complete",
            json={"outcome": "contacted", "note": LATER_TEXT},
        )
        assert with_note.status_code == 409, with_note.text
        assert with_note.json()["rule"] == "D-04"
        answers.append(with_note.text)
        done = await stack.followup.post(
            f"/v1/followups/{task['id']}/complete", json={"outcome": "contacted"}
        )
        assert done.status_code == 200, done.text
        task = await first_open_task(KEEP)
        noted = await stack.followup.post(
            f"/v1/followups/{task['id']}/complete",
            json={"outcome": "contacted", "note": LATER_TEXT},
        )
        assert noted.status_code == 200, noted.text
        answers.append(noted.text)

        # The destruction is a recorded event that reaches the audit trail; the chain verifies.
        async def shredded_in_trail() -> list[dict[str, Any]] | None:
            r = await audit.get("/v1/audit/entries", params={"client_id": GONE, "limit": 100})
            items: list[dict[str, Any]] = r.json()["entries"]
            types = [i["event"]["type"] for i in items]
            return items if "client.personal_data_shredded" in types else None

        entries = await eventually(shredded_in_trail, within=30)
        shred = next(e for e in entries if e["event"]["type"] == "client.personal_data_shredded")
        assert shred["event"]["data"]["basis"] == "no_retention"
        assert shred["event"]["actor"] == {"id": "privacy-shredder", "role": "system"}
        recorded = next(e for e in entries if e["event"]["type"] == "client.personal_data_recorded")
        assert recorded["view"] == "shredded"
        answers.append(orjson.dumps(entries).decode())
        verify = await audit.get("/v1/audit/verify")
        assert verify.status_code == 200
        assert verify.json()["ok"] is True, verify.text
        export = await audit.get("/v1/audit/export", params={"format": "jsonl"})
        assert export.status_code == 200
        answers.append(export.text)

        # Read models and other views.
        for path in (f"/v1/clients/{KEEP}", f"/v1/clients/{GONE}", "/v1/followups"):
            answers.append((await stack.followup.get(path)).text)

        # CLOSED: retention (10 years) runs from the account's closure, not from the request:
        # pending now, destroyed once it has run.
        statuses = {s.client_id: s for s in await shred_due_once(quick, dry_run=True)}
        plan = statuses[CLOSED].plan
        assert plan is not None
        assert plan.basis is ShredBasis.RETENTION_ENDED
        closed_at = datetime.fromisoformat(at(15))
        assert plan.retention_until == closed_at.replace(year=closed_at.year + 10)
        assert statuses[KEEP].plan is None  # the relationship lasts: no date yet
        assert statuses[HELD].held  # D-11: a standing hold beats erasure
        assert statuses[HELD].plan is None
        run_out = plan.due_at + timedelta(seconds=1)
        carried_out = await shred_due_once(quick, dry_run=False, now=run_out)
        assert {s.client_id for s in carried_out if s.shredded} == {CLOSED}

        async def closed_gone() -> bool:
            r = await stack.followup.get(
                f"/v1/clients/{CLOSED}/personal-data", params={"purpose": "check"}
            )
            return r.status_code == 410

        await eventually(closed_gone)

        # The shredding job keeps KEEP restricted (retention applies, the relationship lasts).
        still = await stack.followup.get(
            f"/v1/clients/{KEEP}/personal-data", params={"purpose": "x"}
        )
        assert still.status_code == 409
        held = await stack.followup.get(
            f"/v1/clients/{HELD}/personal-data", params={"purpose": "x"}
        )
        assert held.status_code == 409  # restricted, not destroyed

    # Raw storage: no planted value in clear anywhere, in any database.
    for url in (
        quick.intake_database_url,
        quick.followup_database_url,
        quick.keys_database_url,
        quick.audit_database_url,
    ):
        assert_nowhere(await all_rows(infra, url), url.rsplit("/", 1)[-1])
    # Every Kafka message, key and header of every topic (events and dead letters).
    wire = await all_messages(quick)
    assert b"bl:pii:v1:" in wire  # the personal values travelled, sealed
    assert_nowhere(wire, "the topics")
    # Every captured log line, as the services write it.
    formatter = JsonLineFormatter("test")
    assert_nowhere("\n".join(formatter.format(r) for r in caplog.records), "the logs")
    for answer_text in answers:
        assert_nowhere(answer_text, "an API answer or problem body")

    # After shredding, not even an administrator holding the master key can open GONE's data;
    # KEEP's still opens (restricted, not destroyed).
    conn = await asyncpg.connect(quick.intake_database_url)
    try:
        envelope = orjson.loads(
            await conn.fetchval(
                "SELECT envelope FROM es_events WHERE stream_id = $1 "
                "AND type = 'client.personal_data_recorded'",
                f"client-{GONE}",
            )
        )
    finally:
        await conn.close()
    assert all(is_sealed(v) for v in envelope["data"]["fields"].values())
    pool = await open_pool(quick.keys_database_url)
    try:
        keys = PostgresClientKeyStore(pool, MasterKey(quick.resolved_master_key()))
        with pytest.raises(KeyDestroyed):
            await keys.existing_key(GONE)
        assert await keys.existing_key(KEEP) is not None
        assert await pool.fetchval(
            "SELECT wrapped_key IS NULL FROM pii_client_keys WHERE client_id = $1", GONE
        )
    finally:
        await pool.close()
    followup = await asyncpg.connect(quick.followup_database_url)
    try:
        left = await followup.fetchval(
            "SELECT count(*) FROM fu_personal_values WHERE client_id = $1", GONE
        )
        kept = await followup.fetchval(
            "SELECT count(*) FROM fu_personal_values WHERE client_id = $1", KEEP
        )
    finally:
        await followup.close()
    assert left == 0
    assert kept > 0
