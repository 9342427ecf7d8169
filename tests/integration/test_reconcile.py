"""``branchline reconcile [--repair]`` on the real stack: intake with its relay, the followup
worker and the audit consumer on a real PostgreSQL and broker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from prometheus_client import REGISTRY
from typer.testing import CliRunner

from branchline_audit.adapters.database import open_role_pool
from branchline_audit.bootstrap import self_repair as audit_self_repair
from branchline_cli.main import app as cli
from branchline_cli.reconcile_commands import reconcile_stack
from branchline_followup.bootstrap import rebuild, running_worker, worker_self_repair
from branchline_intake.bootstrap import create_app
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.eventstore.postgres import PostgresUnitOfWork
from branchline_shared.http.auth import Role
from branchline_shared.kafka.topics import declare_topics
from branchline_shared.postgres.pool import open_pool
from branchline_shared.reconcile.running import Reconciliation, store_sources
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.support.consumers import audit_consumer
from tests.support.events import ADMIN, recorded_event, registration_body
from tests.support.kafka import produce
from tests.support.stack import Infra, eventually, make_settings, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def registration(client_id: str) -> dict[str, Any]:
    # now: intake refuses backdated events (D-05b)
    return registration_body(client_id, None, datetime.now(UTC) - timedelta(minutes=1))


def recorded(client_id: str, version: int = 1) -> RecordedEvent:
    return recorded_event(
        "client.registered",
        {"client_type": "individual", "rm_id": "rm-7"},
        at=datetime(2026, 11, 22, 1, 0, tzinfo=UTC),
        client_id=client_id,
        branch_id="BR-001",
        version=version,
    )


@contextlib.asynccontextmanager
async def whole_stack(
    settings: BranchlineSettings, tokens: TokenFactory
) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve(create_app(settings)) as url,
        running_worker(settings),
        audit_consumer(settings),
        httpx.AsyncClient(
            base_url=url, headers=tokens.headers(Role.BRANCH_SYSTEM), timeout=10
        ) as client,
    ):
        yield client


async def settled(settings: BranchlineSettings) -> Reconciliation:
    """Reconcile once nothing is in flight any more (bounded), and the reconcile's first read
    (what each consumer applied, its count and the last global positions it recorded) saw
    all that its later read of the stores found applied: reconcile reads the consumers
    before the stores, so a consumer that applies a batch between the two reads shows
    nothing missing yet its count and positions from before the batch (#12)."""

    async def probe() -> Reconciliation | None:
        result, _ = await reconcile_stack(settings, grace_s=0)
        busy = sum(r.in_flight for r in result.reports)
        caught_up = all(r.applied >= sum(p.applied for p in r.progress) for r in result.reports)
        return result if busy == 0 and result.missing == 0 and caught_up else None

    return await eventually(probe, within=40, interval=0.5)


async def nothing_unsettled(settings: BranchlineSettings) -> Reconciliation:
    """Reconcile once nothing is missing, extra, dead-lettered or in flight (bounded; out of
    order and late may remain); a timeout fails naming the last reports."""
    last: list[Reconciliation] = []

    async def probe() -> Reconciliation | None:
        result, _ = await reconcile_stack(settings, grace_s=0)
        unsettled = sum(
            len(r.missing) + len(r.extra) + len(r.dead_lettered) + r.in_flight
            for r in result.reports
        )
        last.append(result)
        return result if unsettled == 0 else None

    try:
        return await eventually(probe, within=40, interval=0.5)
    except AssertionError:
        raise AssertionError(last[-1].reports if last else None) from None


async def lost_by_the_broker(settings: BranchlineSettings, event: RecordedEvent) -> None:
    """An event accepted and marked published whose message the broker then lost."""
    pool = await open_pool(settings.intake_database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await _stage(settings, conn, event)
            await conn.execute(
                "UPDATE es_outbox SET published_at = now() - interval '1 hour' WHERE event_id = $1",
                event.event_id,
            )
    finally:
        await pool.close()


async def _stage(
    settings: BranchlineSettings, conn: asyncpg.Connection, event: RecordedEvent
) -> None:
    """Store ``event`` in intake's store and outbox, as intake's unit of work does."""
    uow = PostgresUnitOfWork(conn)
    await uow.lock_streams([event.stream_id])
    uow.stage(event, topic=declare_topics(settings).intake_events.name, submission_hash=None)
    await uow.commit()


async def outbox_rows(settings: BranchlineSettings) -> int:
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM es_outbox"))
    finally:
        await conn.close()


def cli_env(settings: BranchlineSettings) -> dict[str, str]:
    return {
        "BRANCHLINE_INTAKE_DATABASE_URL": settings.intake_database_url,
        "BRANCHLINE_FOLLOWUP_DATABASE_URL": settings.followup_database_url,
        "BRANCHLINE_AUDIT_DATABASE_URL": settings.audit_database_url,
        "BRANCHLINE_KEYS_DATABASE_URL": settings.keys_database_url,
        "BRANCHLINE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "BRANCHLINE_TOPIC_NAMESPACE": settings.topic_namespace,
        "BRANCHLINE_DATA_DIR": str(settings.data_dir),
    }


async def run_cli(settings: BranchlineSettings, *args: str) -> tuple[int, str]:
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, ["reconcile", *args], env=cli_env(settings)
    )
    return result.exit_code, result.output


async def test_healthy_stack_has_no_differences_and_reconcile_changes_nothing(
    settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    async with whole_stack(settings, tokens) as intake:
        for n in range(6):
            response = await intake.post("/v1/events", json=registration(f"C-{n}"))
            assert response.status_code == 202, response.text
        result = await settled(settings)
        assert result.differences == 0
        audit, followup = result.reports
        progress = {p.source: p for p in audit.progress}
        # followup records its task creations in its own store; both consumers apply those too
        assert (
            progress["intake"].applied == {p.source: p for p in followup.progress}["intake"].applied
        )
        assert progress["intake"].applied == 6
        assert progress["intake"].last_global_position == 6
        assert progress["intake"].contiguous_to is not None
        rows = await outbox_rows(settings)
        code, output = await run_cli(settings, "--repair", "--grace", "0")
        assert code == 0, output
        assert "0 differences" in output
        assert await outbox_rows(settings) == rows


async def test_what_the_broker_lost_is_found_and_republished_once(
    settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    async with whole_stack(settings, tokens) as intake:
        assert (await intake.post("/v1/events", json=registration("C-1"))).status_code == 202
        await settled(settings)
        lost = recorded("C-lost")
        await lost_by_the_broker(settings, lost)

        code, output = await run_cli(settings, "--grace", "0")
        assert code == 1
        assert output.count("missing: intake:") == 2, output  # the ledger and the read models

        first, second = await reconcile_stack(settings, repair=True, grace_s=0, wait_s=30)
        assert [len(r.missing) for r in first.reports] == [1, 1]
        assert first.missing == 2
        assert first.requeued == {"intake": 1}
        assert second is not None
        repaired = {e.event_id for r in first.reports for e in r.missing}
        assert not repaired & {e.event_id for r in second.reports for e in r.missing}

        # What the re-published event causes (followup's task for the new client, published by
        # followup's relay) reaches the ledger a moment later: with no grace it may still be
        # on its way when the second reconcile reads, so wait (bounded) until nothing differs.
        async def nothing_differs() -> bool:
            result, _ = await reconcile_stack(settings, grace_s=0)
            return result.differences == 0

        await eventually(nothing_differs, within=30)
        # a second repair finds nothing to do: exactly what was missing was re-published
        again, _ = await reconcile_stack(settings, repair=True, grace_s=0)
        assert again.requeued == {}


async def test_an_event_no_store_accepted_is_extra(
    settings: BranchlineSettings, tokens: TokenFactory
) -> None:
    async with whole_stack(settings, tokens) as intake:
        assert (await intake.post("/v1/events", json=registration("C-1"))).status_code == 202
        forged = recorded("C-forged")
        await produce(
            settings.kafka_bootstrap,
            declare_topics(settings).intake_events.name,
            [(b"C-forged", forged.model_dump_json().encode())],
        )

        async def both_applied_it() -> Reconciliation | None:
            # C-1 too: the forged message can reach a consumer before the relay's publication
            # of C-1 does, and with no grace C-1 counts as missing until then (not a loss: a
            # lost C-1 would keep this from ever holding).
            result, _ = await reconcile_stack(settings, grace_s=0)
            done = all(r.extra == [forged.event_id] and not r.missing for r in result.reports)
            return result if done else None

        result = await eventually(both_applied_it, within=30, interval=0.5)
        assert result.differences == 2
        code, output = await run_cli(settings, "--grace", "0")
        assert code == 1
        assert f"extra: {forged.event_id}" in output


async def stored_for_the_relay(settings: BranchlineSettings, event: RecordedEvent) -> None:
    """An event accepted by intake's store; its relay publishes it."""
    pool = await open_pool(settings.intake_database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn, conn.transaction():
            await _stage(settings, conn, event)
    finally:
        await pool.close()


def jumps_seen(consumer: str) -> float:
    value = REGISTRY.get_sample_value(
        "branchline_consumer_position_jumps_total", {"consumer": consumer}
    )
    return value or 0.0


async def test_a_position_jump_is_repaired_at_once_without_waiting_for_the_self_check(
    infra: Infra, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Version 2 of a client's stream is lost by the broker; version 3 arrives: both consumers
    see the jump at once (metric, log line) and re-queue version 2, long before their periodic
    self-check (an hour here) would have."""
    settings = make_settings(infra, tmp_path, reconcile_self_check_interval_s=3600.0)
    tokens = TokenFactory(settings)
    before = {c: jumps_seen(c) for c in ("audit-consumer", "followup-worker")}
    async with whole_stack(settings, tokens) as intake:
        assert (await intake.post("/v1/events", json=registration("C-J"))).status_code == 202
        await settled(settings)
        lost = recorded("C-J", version=2)
        await lost_by_the_broker(settings, lost)
        await stored_for_the_relay(settings, recorded("C-J", version=3))

        # v2 is applied after v3 (the worker re-projected the client in source order);
        # nothing is missing, extra, dead-lettered or in flight once repaired
        await nothing_unsettled(settings)
        # the consumers re-queued it themselves (each its own repair): a second outbox row
        conn = await asyncpg.connect(settings.intake_database_url)
        try:
            rows = await conn.fetchval(
                "SELECT count(*) FROM es_outbox WHERE event_id = $1", lost.event_id
            )
        finally:
            await conn.close()
        assert rows >= 2
    assert {c: jumps_seen(c) - n for c, n in before.items()} == {
        "audit-consumer": 1,
        "followup-worker": 1,
    }
    assert any("position jump" in r.getMessage() for r in caplog.records)
    assert any(
        "re-queued them for publication" in r.getMessage()
        and getattr(r, "trigger", None) == "position_jump"
        for r in caplog.records
    )


def product_event(version: int, event_id: int) -> RecordedEvent:
    """Version ``version`` of product P-L's stream (an approval, then re-ratings): events
    without a client, which no client's re-projection puts in order."""
    at = datetime(2026, 11, 22, 1, version, tzinfo=UTC)
    event = (
        recorded_event(
            "product.approved",
            {
                "name": "Fund L",
                "category": "fund",
                "risk": "R2",
                "eligible_client_types": ["individual"],
            },
            at=at,
            product_id="P-L",
            actor=ADMIN,
        )
        if version == 1
        else recorded_event(
            "product.rerated",
            {"risk": f"R{version}", "effective_at": at.isoformat(), "reason": "equity share"},
            at=at,
            product_id="P-L",
            version=version,
            actor=ADMIN,
        )
    )
    return event.model_copy(update={"event_id": uuid.UUID(int=event_id)})


async def test_a_late_event_the_worker_re_projected_is_late_not_a_difference(
    infra: Infra, tmp_path: Path
) -> None:
    """#12: version 2 of a client's stream and of a product's stream are lost by the broker
    and re-queued (the consumers' position-jump repair) after version 3 was applied. The
    followup worker re-projects the client in source order when the client's arrives: late,
    not a difference; nothing re-projects the product's: still out of order, a difference.
    The audit ledger's order is its record of arrival: both are late, information."""
    settings = make_settings(infra, tmp_path, reconcile_self_check_interval_s=3600.0)
    tokens = TokenFactory(settings)
    async with whole_stack(settings, tokens) as intake:
        assert (await intake.post("/v1/events", json=registration("C-L"))).status_code == 202
        await stored_for_the_relay(settings, product_event(1, 0x11))
        await settled(settings)
        client_late = recorded("C-L", version=2).model_copy(
            update={"event_id": uuid.UUID(int=0x22)}
        )
        product_late = product_event(2, 0x12)
        await lost_by_the_broker(settings, client_late)
        await lost_by_the_broker(settings, product_late)
        client_v3 = recorded("C-L", version=3).model_copy(update={"event_id": uuid.UUID(int=0x23)})
        await stored_for_the_relay(settings, client_v3)
        await stored_for_the_relay(settings, product_event(3, 0x13))

        result = await nothing_unsettled(settings)
        reports = {r.consumer: r for r in result.reports}
        followup, audit = reports["followup-worker"], reports["audit-consumer"]
        assert followup.late == [client_late.event_id]
        assert followup.out_of_order == [product_late.event_id]
        assert audit.late == sorted([client_late.event_id, product_late.event_id], key=str)
        assert audit.out_of_order == []
        assert result.differences == 1  # only what nobody put in order
        assert result.late == 3
        code, output = await run_cli(settings, "--grace", "0")
        assert code == 1, output
        assert f"late: {client_late.event_id}" in output
        assert f"out of order: {product_late.event_id}" in output
        assert "1 differences" in output


async def test_a_rebuild_puts_a_late_product_event_in_order_for_reconcile(
    infra: Infra, tmp_path: Path
) -> None:
    """#12: a product's version 2 applied after its version 3 is out of order, a difference
    (nothing re-projects a product). ``branchline rebuild followup`` from the topics, where the
    re-queued copy of version 2 comes after version 3, applies each stream's versions in order
    (version 3 held back until version 2 arrives), in one process and in two; ``--from-stores``
    applies the store's log order. Reconcile reads the order applied (the rebuilt
    ``applied_seq``): after each, no difference left, and the event is not even late."""
    settings = make_settings(infra, tmp_path, reconcile_self_check_interval_s=3600.0)
    async with whole_stack(settings, TokenFactory(settings)):
        await stored_for_the_relay(settings, product_event(1, 0x31))
        await settled(settings)
        product_late = product_event(2, 0x32)
        await lost_by_the_broker(settings, product_late)
        await stored_for_the_relay(settings, product_event(3, 0x33))

        async def out_of_order() -> Reconciliation | None:
            result, _ = await reconcile_stack(settings, grace_s=0)
            reports = {r.consumer: r for r in result.reports}
            # The audit consumer applies the re-queued copy on its own time (a CI run read it
            # still missing there when the followup worker had applied it): wait for both.
            done = reports["followup-worker"].out_of_order and not reports["audit-consumer"].missing
            return result if done else None

        before = await eventually(out_of_order, within=40, interval=0.5)
        followup = {r.consumer: r for r in before.reports}["followup-worker"]
        assert followup.out_of_order == [product_late.event_id]
        assert before.differences == 1

        for processes in (1, 2):
            await rebuild(settings, batch_size=500, processes=processes)
            from_topics, _ = await reconcile_stack(settings, grace_s=0)
            followup = {r.consumer: r for r in from_topics.reports}["followup-worker"]
            assert (followup.out_of_order, followup.differences) == ([], 0), processes
            assert product_late.event_id not in followup.late, processes

        rebuilt = await rebuild(settings, batch_size=500, from_stores=True)
        assert rebuilt.applied >= 3

        after, _ = await reconcile_stack(settings, grace_s=0)
        followup = {r.consumer: r for r in after.reports}["followup-worker"]
        assert followup.out_of_order == []
        assert followup.differences == 0
        assert after.differences == 0


def self_check_gauge(name: str, consumer: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"consumer": consumer})


async def product_applied_out_of_order(settings: BranchlineSettings, first: int) -> uuid.UUID:
    """Product P-L's version 2 lost by the broker and re-queued (the consumers' position-jump
    repair) after its version 3 was applied: the followup read models hold it out of order
    (as reconcile says), the ledger late. Returns version 2's event id."""
    await stored_for_the_relay(settings, product_event(1, first))
    await settled(settings)
    late = product_event(2, first + 1)
    await lost_by_the_broker(settings, late)
    await stored_for_the_relay(settings, product_event(3, first + 2))

    async def both_applied_it() -> Reconciliation | None:
        result, _ = await reconcile_stack(settings, grace_s=0)
        reports = {r.consumer: r for r in result.reports}
        seen = reports["followup-worker"].out_of_order == [late.event_id]
        return result if seen and reports["audit-consumer"].late == [late.event_id] else None

    await eventually(both_applied_it, within=40, interval=0.5)
    return late.event_id


async def product_applied_late_again(settings: BranchlineSettings) -> uuid.UUID:
    """After :func:`product_applied_out_of_order`: P-L's version 4 lost and re-queued after
    its version 5 was applied, out of order too. Returns version 4's event id."""
    late = product_event(4, 0x44)
    await lost_by_the_broker(settings, late)
    await stored_for_the_relay(settings, product_event(5, 0x45))

    async def applied_it() -> Reconciliation | None:
        result, _ = await reconcile_stack(settings, grace_s=0)
        reports = {r.consumer: r for r in result.reports}
        return result if late.event_id in reports["followup-worker"].out_of_order else None

    await eventually(applied_it, within=40, interval=0.5)
    return late.event_id


def stamped_with_task(record: logging.LogRecord) -> bool:
    """A log filter that notes on each record the asyncio task that logged it (None outside
    one), for a test that tells its own checks' lines from a running consumer's."""
    try:
        record.task = asyncio.current_task()
    except RuntimeError:
        record.task = None
    return True


async def test_the_followup_self_check_reports_a_product_event_applied_out_of_order(
    infra: Infra, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """#12: the worker's own self-check (as its bootstrap wires it) judges order as reconcile
    does: a product's version 2 applied after version 3, which nothing re-projects, is a
    difference, in ``branchline_consumer_self_check_out_of_order``, logged once with the
    remedy however many checks find it (a warning by the first check to find it; another
    process's check, such as the running worker's own, says it was already reported)."""
    caplog.set_level(logging.INFO, logger="branchline_shared.reconcile.self_repair")
    # The running worker's own check may log the same event at any moment of this test (a CI
    # run saw its "already reported" line land between this test's two checks): each record
    # is stamped with the task that logged it, so this test counts its own checks' lines.
    caplog.handler.addFilter(stamped_with_task)
    settings = make_settings(infra, tmp_path, reconcile_self_check_interval_s=3600.0)
    async with (
        serve(create_app(settings)),
        running_worker(settings) as runtime,
        audit_consumer(settings),
    ):
        late = await product_applied_out_of_order(settings, 0x41)
        # a check of its own (the running worker's own, at the position jump, may have
        # found and logged it already: each check logs a finding once)
        repair = worker_self_repair(settings, runtime)
        assert repair is not None
        before = len(caplog.records)
        for _ in range(2):
            assert await repair.check(grace_s=0) == 0  # nothing re-queued: it was applied
            assert self_check_gauge(OUT_OF_ORDER_GAUGE, "followup-worker") == 1
            assert self_check_gauge("branchline_reconcile_differences", "followup-worker") == 1
        # the second check is incremental: it re-asks what it found, nothing applied before
        assert repair.order.candidates == 1
        ours = caplog.records[before:]  # the worker's own check may log the next one too
        later = await product_applied_late_again(settings)
        assert await repair.check(grace_s=0) == 0
        assert self_check_gauge(OUT_OF_ORDER_GAUGE, "followup-worker") == 2
        # the two events applied since the mark (versions 4 and 5) and the one found before
        assert repair.order.candidates == 3
    this_test = asyncio.current_task()
    told = [
        r
        for r in ours
        if getattr(r, "event_id", None) == str(late) and getattr(r, "task", None) is this_test
    ]
    assert len(told) == 1, told  # this test's two checks told it once
    warned = [
        r
        for r in caplog.records
        if getattr(r, "event_id", None) == str(late) and r.levelno == logging.WARNING
    ]
    assert len(warned) == 1, warned  # by this check or the running worker's own: not both
    assert [r for r in caplog.records[before:] if getattr(r, "event_id", None) == str(later)]
    assert getattr(told[0], "stream_id", None) == "product-P-L"
    assert "branchline rebuild followup" in getattr(told[0], "remedy", "")
    assert "--from-stores" in getattr(told[0], "remedy", "")


async def test_the_followup_self_checks_full_order_step_reads_a_page_at_a_time(
    infra: Infra, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """#12: a full check walks the events the worker did not put in order a keyset page at a
    time (``reconcile_self_check_order_page``), each page's streams judged and dropped before
    the next. Pages of one event: product P-L's version 3 and its version 2 applied after it
    are on two pages, and the check still finds version 2 out of order; the stream is read
    once (at its first page), not once a page. A restarted worker's check finds it again and
    does not warn again: already reported (followup migration 025)."""
    caplog.set_level(logging.INFO, logger="branchline_shared.reconcile.self_repair")
    settings = make_settings(
        infra,
        tmp_path,
        reconcile_self_check_interval_s=3600.0,
        reconcile_self_check_order_page=1,
    )
    async with (
        serve(create_app(settings)),
        running_worker(settings) as runtime,
        audit_consumer(settings),
    ):
        late = await product_applied_out_of_order(settings, 0x61)
        repair = worker_self_repair(settings, runtime)
        assert repair is not None
        assert await repair.check(grace_s=0) == 0  # a process's first check: full
        assert self_check_gauge(OUT_OF_ORDER_GAUGE, "followup-worker") == 1
        assert repair.order.pages == 3  # versions 1, 3, 2 in the order applied
        assert repair.order.candidates == 3
        assert repair.order.largest_read == 3  # P-L's three versions, read once
        found = await repair.order.check(store_sources(settings), full=True)
        assert [e.event_id for e in found] == [late]
        reported = [
            r
            for r in caplog.records
            if getattr(r, "event_id", None) == str(late) and r.levelno == logging.WARNING
        ]
        assert len(reported) == 1, reported  # this check's, or the running worker's own
        before = len(caplog.records)
        restarted = worker_self_repair(settings, runtime)  # a new process's: told nothing
        assert restarted is not None
        assert await restarted.check(grace_s=0) == 0
        assert self_check_gauge(OUT_OF_ORDER_GAUGE, "followup-worker") == 1
        again = [r for r in caplog.records[before:] if getattr(r, "event_id", None) == str(late)]
        assert [r.levelno for r in again] == [logging.INFO], again
        assert "already reported" in again[0].getMessage()


async def test_the_followup_self_checks_order_step_takes_no_task_creation(
    infra: Infra, tmp_path: Path, tokens: TokenFactory
) -> None:
    """#12: a task creation the worker applies from its own topic is only marked (its task
    was written where the rules decided it), so its order changes nothing: the order step
    does not take it as a candidate. It did: one per task, read again at every check, the
    worker's memory at rest grew with the events applied (the benchmark's growth stack)."""
    settings = make_settings(infra, tmp_path, reconcile_self_check_interval_s=3600.0)
    async with whole_stack(settings, tokens) as intake:
        for n in range(6):
            response = await intake.post("/v1/events", json=registration(f"C-{n}"))
            assert response.status_code == 202, response.text
        result = await settled(settings)
        followup = {r.consumer: r for r in result.reports}["followup-worker"]
        creations = {p.source: p for p in followup.progress}["followup"].applied
        assert creations == 6  # one task a registration, its creation applied from the topic
    async with running_worker(settings) as runtime:
        repair = worker_self_repair(settings, runtime)
        assert repair is not None
        assert await repair.check(grace_s=0) == 0
        assert repair.order.candidates == 0


async def test_the_audit_self_check_does_not_count_a_late_ledger_entry(
    infra: Infra, tmp_path: Path
) -> None:
    """#12: the ledger's order is its record: the audit consumer's self-check is told so
    (``late_is_record``), and a product event entered after its later version (late, as
    reconcile says) is no difference and nothing out of order."""
    settings = make_settings(infra, tmp_path, reconcile_self_check_interval_s=3600.0)
    async with (
        serve(create_app(settings)),
        running_worker(settings),
        audit_consumer(settings),
    ):
        await product_applied_out_of_order(settings, 0x51)
        pool = await open_role_pool(settings, settings.audit_db_writer_role, min_size=1, max_size=2)
        try:
            repair = audit_self_repair(settings, pool)
            assert repair is not None
            assert await repair.check(grace_s=0) == 0
        finally:
            await pool.close()
    assert self_check_gauge(OUT_OF_ORDER_GAUGE, "audit-consumer") == 0
    assert self_check_gauge("branchline_reconcile_differences", "audit-consumer") == 0


OUT_OF_ORDER_GAUGE = "branchline_consumer_self_check_out_of_order"


@pytest.mark.timeout(300)
async def test_reconcile_reads_a_page_at_a_time_with_the_whole_reads_findings(
    infra: Infra, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#12: ``branchline reconcile`` walks the stores and what each consumer applied a page
    at a time (``--page``; the setting ``reconcile_self_check_order_page`` by default): with
    pages of one event, no statement returns more than one row, and the reports are those of
    reading everything at once: product P-L's versions 2 and 4 applied after 3 and 5 (every
    pair split by a page boundary) out of order for the worker and late for the ledger, a
    client's version 2 applied after its 3 late for both, an event the broker lost missing."""
    settings = make_settings(infra, tmp_path, reconcile_self_check_interval_s=3600.0)
    tokens = TokenFactory(settings)
    async with whole_stack(settings, tokens) as intake:
        for n in range(4):
            response = await intake.post("/v1/events", json=registration(f"C-{n}"))
            assert response.status_code == 202, response.text
        assert (await intake.post("/v1/events", json=registration("C-L"))).status_code == 202
        late = await product_applied_out_of_order(settings, 0x71)
        later = await product_applied_late_again(settings)
        client_late = recorded("C-L", version=2).model_copy(
            update={"event_id": uuid.UUID(int=0x82)}
        )
        await lost_by_the_broker(settings, client_late)
        await stored_for_the_relay(
            settings,
            recorded("C-L", version=3).model_copy(update={"event_id": uuid.UUID(int=0x83)}),
        )

        async def client_late_applied() -> Reconciliation | None:
            result = await nothing_unsettled(settings)
            return result if all(client_late.event_id in r.late for r in result.reports) else None

        await eventually(client_late_applied, within=40, interval=0.5)
    # the stack stopped: what the stores and consumers hold no longer changes; one more
    # event the broker lost, applied by nobody: missing
    missing = recorded("C-M")
    await lost_by_the_broker(settings, missing)

    whole, _ = await reconcile_stack(settings, grace_s=0, whole=True)
    rows_read: list[int] = []
    fetch = asyncpg.connection.Connection.fetch
    # this test's databases only (the loop is the session's: another test's leftover task
    # may read its own)
    ours = {
        url.rsplit("/", 1)[-1].split("?")[0]
        for url in (
            settings.intake_database_url,
            settings.followup_database_url,
            settings.audit_database_url,
        )
    }

    async def counted(self: asyncpg.Connection, query: str, *args: Any, **kw: Any) -> Any:
        rows = await fetch(self, query, *args, **kw)
        if self._params.database in ours:
            rows_read.append(len(rows))
        return rows

    monkeypatch.setattr(asyncpg.connection.Connection, "fetch", counted)
    paged, _ = await reconcile_stack(settings, grace_s=0, page=1)
    assert rows_read
    assert max(rows_read) == 1, rows_read
    assert paged.reports == whole.reports
    reports = {r.consumer: r for r in paged.reports}
    followup, audit = reports["followup-worker"], reports["audit-consumer"]
    assert followup.out_of_order == sorted([late, later], key=lambda i: i.hex)
    assert client_late.event_id in followup.late
    assert audit.out_of_order == []
    assert {late, later, client_late.event_id} <= set(audit.late)
    for report in paged.reports:
        # (and any event a consumer had not applied yet when the stack stopped)
        assert missing.event_id in [e.event_id for e in report.missing]
        assert report.extra == []
        assert report.in_flight == 0
    assert paged.differences == whole.differences >= 4  # two out of order, missing twice

    rows_read.clear()
    code, output = await run_cli(settings, "--grace", "0", "--page", "1")
    assert code == 1, output
    assert max(rows_read) == 1, rows_read
    assert f"out of order: {late}" in output
    assert "missing: intake:" in output
    assert str(missing.event_id) in output
    assert f"{whole.differences} differences" in output


async def test_reconcile_counts_every_finding_keeps_a_few_and_repairs_them_all(
    settings: BranchlineSettings, tokens: TokenFactory, tmp_path: Path
) -> None:
    """#12: more findings than kept. Seven events the broker lost, missing for both consumers,
    read two a page with two kept a kind: each report counts 7 and holds 2, the CLI prints 7
    and "... and 5 more", its ``--findings`` file lists all 14 as JSON lines, and
    ``--repair`` re-queues all 7 (a page at a time as found, not the 2 kept), so that in the
    end nothing differs."""
    async with whole_stack(settings, tokens) as intake:
        assert (await intake.post("/v1/events", json=registration("C-1"))).status_code == 202
        await settled(settings)
        lost = [recorded(f"C-lost-{n}") for n in range(7)]
        for event in lost:
            await lost_by_the_broker(settings, event)
        ids = {event.event_id for event in lost}
        consumers = ("audit-consumer", "followup-worker")

        findings = tmp_path / "findings.jsonl"
        code, output = await run_cli(
            settings, "--grace", "0", "--page", "2", "--keep", "2", "--findings", str(findings)
        )
        assert code == 1, output
        assert output.count("missing 7,") == 2, output
        assert output.count("missing: intake:") == 4, output  # two kept for each consumer
        assert output.count("missing: ... and 5 more") == 2, output
        lines = [orjson.loads(line) for line in findings.read_bytes().splitlines()]
        assert len(lines) == 14, lines
        for consumer in consumers:
            mine = [line for line in lines if line["consumer"] == consumer]
            assert {line["kind"] for line in mine} == {"missing"}
            assert {uuid.UUID(line["event_id"]) for line in mine} == ids
            assert {line["source"] for line in mine} == {"intake"}

        told: list[tuple[str, str, object]] = []
        rows = await outbox_rows(settings)
        first, _ = await reconcile_stack(
            settings,
            repair=True,
            grace_s=0,
            wait_s=30,
            page=2,
            keep=2,
            sink=lambda consumer, kind, item: told.append((consumer, kind, item)),
        )
        assert [r.count("missing") for r in first.reports] == [7, 7]
        assert [len(r.missing) for r in first.reports] == [2, 2]  # examples capped
        assert first.missing == 14
        assert first.differences == 14
        assert first.requeued == {"intake": 7}
        assert await outbox_rows(settings) == rows + 7  # each re-queued once
        for consumer in consumers:
            assert {
                getattr(item, "event_id", None) for who, kind, item in told if who == consumer
            } == ids

        async def nothing_differs() -> bool:
            result, _ = await reconcile_stack(settings, grace_s=0, page=2, keep=2)
            return result.differences == 0

        # all seven applied by both: not only the two each report kept
        await eventually(nothing_differs, within=40)
