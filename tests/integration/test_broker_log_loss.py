"""A broker that restarts empty (tansu's memory store): both consumers rewind, and what it had
acknowledged but nobody had read is re-published from the event stores by the consumers' own
reconciliation. Nothing accepted is lost."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import REGISTRY

from branchline_cli.reconcile_commands import reconcile_stack
from branchline_shared.embedded.ports import free_port
from branchline_shared.embedded.tansu import TansuBroker
from branchline_shared.kafka import consuming
from branchline_shared.kafka.group_offsets import GroupOffsets
from branchline_shared.kafka.topics import declare_topics
from branchline_shared.reconcile.running import Reconciliation, store_sources
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.test_reconcile import lost_by_the_broker, recorded, registration, whole_stack
from tests.support.kafka import crash
from tests.support.stack import Infra, eventually, make_settings, runtime_dir

pytestmark = [pytest.mark.integration, pytest.mark.chaos, pytest.mark.timeout(180)]


@pytest.fixture
def broker() -> Iterator[TansuBroker]:
    """A broker of this test's own: restarting it must not disturb the others' topics."""
    own = TansuBroker(free_port(), runtime_dir() / f"tansu-loss-{free_port()}.log")
    own.start()
    try:
        yield own
    finally:
        own.stop()


@pytest.fixture
def loss_settings(infra: Infra, tmp_path: Path, broker: TansuBroker) -> BranchlineSettings:
    return make_settings(
        Infra(infra.postgres_admin_url, broker.bootstrap),
        tmp_path,
        reconcile_self_check_interval_s=1.0,
        reconcile_grace_s=1.0,
    )


CONSUMERS = ("audit-consumer", "followup-worker")


def repaired_count() -> float:
    """Events the consumers found missing and had re-published, whatever triggered it."""
    return sum(
        REGISTRY.get_sample_value(
            "branchline_consumer_gaps_repaired_total", {"consumer": c, "trigger": t}
        )
        or 0.0
        for c in CONSUMERS
        for t in ("periodic", "log_reset")
    )


Marks = dict[str, dict[TopicPartition, tuple[float, int, int | None]]]


@pytest.fixture
def marks_seen(monkeypatch: pytest.MonkeyPatch) -> Marks:
    """Each consumer's positions and high watermarks as its own loop last looked at them (its
    fetch-wait and log-end checks), with when: a failure names where each one stood."""
    seen: Marks = {}
    real = consuming.partition_marks

    async def recording(
        consumer: AIOKafkaConsumer,
        partitions: Iterable[TopicPartition] | None = None,
        *,
        within_s: float | None = None,
    ) -> dict[TopicPartition, tuple[int, int | None]]:
        marks = await real(consumer, partitions, within_s=within_s)
        now = asyncio.get_running_loop().time()
        name = str(getattr(getattr(consumer, "_client", None), "_client_id", "?"))
        if name not in CONSUMERS:  # the dead-letter watchers
            return marks
        for tp, (position, highwater) in marks.items():
            seen.setdefault(name, {})[tp] = (now, position, highwater)
        return marks

    monkeypatch.setattr(consuming, "partition_marks", recording)
    return seen


class Probes:
    """How the wait went, probe by probe: how many, how long each took, and every change of
    what they found (with when), so a failure tells a probe too slow to come round (a loaded
    machine) from a consumer stuck from the start or one that stopped half way."""

    def __init__(self) -> None:
        self.started = asyncio.get_running_loop().time()
        self.count = 0
        self.slowest = 0.0
        self.changes: list[str] = []
        self._last = ""

    def note(self, began: float, found: str) -> None:
        now = asyncio.get_running_loop().time()
        self.count += 1
        self.slowest = max(self.slowest, now - began)
        if found != self._last:
            self._last = found
            self.changes.append(f"  {began - self.started:6.1f}s (took {now - began:.1f}s) {found}")

    def report(self) -> list[str]:
        elapsed = asyncio.get_running_loop().time() - self.started
        head = (
            f"{self.count} probes in {elapsed:.1f}s, the slowest {self.slowest:.1f}s; what they "
            "found, at each change:"
        )
        return [head, *self.changes[-40:]]


def found(result: Reconciliation) -> str:
    """One probe's finding, per consumer."""
    return "; ".join(
        f"{r.consumer} "
        + " ".join(f"{p.source} {p.applied}/{p.events}" for p in r.progress)
        + f" missing {len(r.missing)} dead {len(r.dead_lettered)} extra {len(r.extra)} "
        f"out of order {len(r.out_of_order)} in flight {r.in_flight}"
        for r in result.reports
    )


async def all_applied(
    settings: BranchlineSettings, expected: int, why: Diagnosis | None = None
) -> Reconciliation:
    last: list[Reconciliation] = []
    probes = Probes()

    async def probe() -> Reconciliation | None:
        began = asyncio.get_running_loop().time()
        try:
            result, _ = await reconcile_stack(settings, grace_s=0)
        except Exception as exc:
            # a loaded machine's connect timing out, say: the next probe asks again, and a
            # reconcile that keeps failing still fails the wait, naming its error
            probes.note(began, f"reconcile failed: {exc!r}")
            raise AssertionError(f"reconcile failed: {exc!r}") from exc
        probes.note(began, found(result))
        last[:] = [result]
        # counted per source: followup also records its own events (task creations), which
        # both consumers apply on top of intake's
        from_intake = [
            p.applied for r in result.reports for p in r.progress if p.source == "intake"
        ]
        done = result.differences == 0 and len(from_intake) == len(result.reports)
        done = done and all(applied == expected for applied in from_intake)
        return result if done else None

    try:
        return await eventually(probe, within=60, interval=1.0)
    except AssertionError as exc:
        if why is None:
            raise AssertionError(f"{exc}\n" + "\n".join(probes.report())) from None
        report = await why.report(last[0] if last else None, expected)
        raise AssertionError(f"{exc}\n" + "\n".join(probes.report()) + f"\n{report}") from None


class Diagnosis:
    """What a failure says (CI, 2026-12-07: "not within 60 s" after the restart, naming no
    consumer): per consumer what it applied and misses, where the relay put each missing
    event, its group's committed offsets and the log's bounds on the broker now, where its
    own loop last saw its positions and high watermarks, its repair counters, and its log."""

    def __init__(
        self, settings: BranchlineSettings, marks: Marks, caplog: pytest.LogCaptureFixture
    ) -> None:
        self._settings = settings
        self._marks = marks
        self._caplog = caplog
        self.crashed_at: float | None = None

    async def report(self, result: Reconciliation | None, expected: int) -> str:
        lines = [f"expected {expected} intake events applied by each consumer"]
        parts = (
            self._applied(result),
            self._copies(result),
            self._groups(),
        )
        for part in parts:
            try:
                lines += await part
            except Exception as exc:  # a diagnosis never hides the failure it explains
                lines.append(f"  (not readable: {exc!r})")
        lines += self._positions() + self._counters() + self._logged()
        return "\n".join(lines)

    async def _applied(self, result: Reconciliation | None) -> list[str]:
        if result is None:
            return ["no reconciliation answered"]
        lines = []
        for r in result.reports:
            progress = ", ".join(f"{p.source} {p.applied}/{p.events}" for p in r.progress)
            lines.append(f"{r.consumer}: applied {progress}; in flight {r.in_flight}")
            for kind, events in (("missing", r.missing), ("dead-lettered", r.dead_lettered)):
                for e in events:
                    lines.append(
                        f"  {kind}: {e.source} {e.client_id} v{e.stream_version} {e.topic} "
                        f"in_flight={e.in_flight} id={e.event_id}"
                    )
            if r.extra or r.out_of_order:
                lines.append(f"  extra {r.extra} out of order {r.out_of_order}")
        return lines

    async def _copies(self, result: Reconciliation | None) -> list[str]:
        """The outbox rows of every missing event: where the relay put each copy."""
        if result is None:
            return []
        wanted = {e.event_id for r in result.reports for e in r.missing}
        lines = []
        for store in store_sources(self._settings):
            conn = await asyncpg.connect(store.dsn, timeout=10)
            try:
                rows = await conn.fetch(
                    "SELECT * FROM es_outbox WHERE event_id = ANY($1::uuid[]) ORDER BY id",
                    list(wanted),
                )
            finally:
                await conn.close()
            for row in rows:
                copy = {k: v for k, v in row.items() if k != "message_key"}
                lines.append(f"  outbox {store.source}: {copy}")
        return lines

    async def _groups(self) -> list[str]:
        """Each group's committed offsets and each partition's bounds, as the broker says now."""
        topics = list(declare_topics(self._settings).event_topics())
        lines = []
        for name in CONSUMERS:
            async with GroupOffsets(
                self._settings.kafka_bootstrap, self._settings.topic(name), topics, timeout_s=5
            ) as group:
                partitions = await group.partitions()
                committed = await group.committed(partitions)
                bounds = await group.bounds(partitions)
            marks = " ".join(
                f"{tp.topic.rsplit('.', 3)[-3]}:{tp.partition}={committed.get(tp)}@{bounds.get(tp)}"
                for tp in partitions
            )
            lines.append(f"{name} on the broker (committed@(start, end)): {marks}")
        return lines

    def _positions(self) -> list[str]:
        now = asyncio.get_running_loop().time()
        lines = []
        for name, marks in sorted(self._marks.items()):
            where = " ".join(
                f"{tp.topic.rsplit('.', 3)[-3]}:{tp.partition}={position}/{highwater}"
                f"({now - at:.1f}s ago)"
                for tp, (at, position, highwater) in sorted(
                    marks.items(), key=lambda item: (item[0].topic, item[0].partition)
                )
            )
            lines.append(f"{name} last looked (position/high watermark): {where}")
        return lines

    def _counters(self) -> list[str]:
        def value(metric: str, labels: dict[str, str]) -> float:
            return REGISTRY.get_sample_value(metric, labels) or 0.0

        lines = []
        for c in CONSUMERS:
            checks = {
                t: value("branchline_consumer_self_checks_total", {"consumer": c, "trigger": t})
                for t in ("log_reset", "position_jump", "periodic")
            }
            repaired = {
                t: value("branchline_consumer_gaps_repaired_total", {"consumer": c, "trigger": t})
                for t in ("log_reset", "position_jump", "periodic")
            }
            lost = value("branchline_consumer_log_lost_total", {"consumer": c})
            lines.append(
                f"{c}: rewound {lost:g}, self-checks {checks}, re-queued {repaired}, not "
                f"reached {value('branchline_consumer_self_check_not_reached', {'consumer': c}):g}"
            )
        return lines

    def _logged(self) -> list[str]:
        """What was logged since the crash (warnings, and the consumers' and groups' info
        lines), each with the consumer it names: pytest's own capture leaves that out."""
        lines = ["logged since the broker crashed:"]
        for record in self._caplog.records:
            if self.crashed_at is not None and record.created < self.crashed_at:
                continue
            named = _named(record)
            if record.levelno < logging.WARNING and named is None:
                continue
            lines.append(
                f"  {record.created % 1000:8.3f} {record.levelname} {record.name} "
                f"[{named or '-'}] {record.getMessage()}{_extra(record)}"
            )
        return lines[:200]


def _named(record: logging.LogRecord) -> str | None:
    consumer = getattr(record, "consumer", None)
    if consumer is not None:
        return str(consumer)
    message = record.getMessage()
    return next((c for c in CONSUMERS if c in message), None)


STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


def _extra(record: logging.LogRecord) -> str:
    extra: dict[str, Any] = {
        k: v for k, v in vars(record).items() if k not in STANDARD and k != "consumer"
    }
    return f" {extra}" if extra else ""


@contextlib.asynccontextmanager
async def stack(
    settings: BranchlineSettings, tokens: TokenFactory
) -> AsyncIterator[httpx.AsyncClient]:
    async with whole_stack(settings, tokens) as intake:
        yield intake


async def test_consumers_rewind_and_reconcile_after_the_broker_lost_its_log(
    loss_settings: BranchlineSettings,
    broker: TansuBroker,
    marks_seen: Marks,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = loss_settings
    tokens = TokenFactory(settings)
    why = Diagnosis(settings, marks_seen, caplog)
    caplog.set_level(logging.INFO)
    before = repaired_count()
    async with stack(settings, tokens) as intake:
        for n in range(12):
            assert (await intake.post("/v1/events", json=registration(f"C-{n}"))).status_code == 202
        await all_applied(settings, 12)

        why.crashed_at = time.time()
        crash(broker)
        broker.start()  # same port, empty log: topics, offsets and groups are gone

        # accepted after the restart: published to the new log, at offsets below our positions
        assert (await intake.post("/v1/events", json=registration("C-after"))).status_code == 202
        # acknowledged by the old broker, never read by anyone: only the store still has it
        await lost_by_the_broker(settings, recorded("C-lost"))

        result = await all_applied(settings, 14, why)
    assert result.differences == 0
    # C-lost reached the ledger and the read models only through the consumers' own repair
    # (whether a consumer rewound or its group rejoined at the new log's start depends on
    # timing; either way nothing was skipped)
    assert repaired_count() > before
