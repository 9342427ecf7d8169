"""``branchline reconcile [--repair]``: every event store compared with the audit ledger and the
followup read models; missing, extra and out-of-order events per consumer."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Annotated

import orjson
import typer
from rich.console import Console

from branchline_shared.reconcile.compare import ConsumerReport, StoreEvent
from branchline_shared.reconcile.running import (
    ConsumerSource,
    Finding,
    Reconciliation,
    Sink,
    reconcile,
    store_sources,
)
from branchline_shared.settings import BranchlineSettings

console = Console(highlight=False)


@contextlib.asynccontextmanager
async def consumer_sources(settings: BranchlineSettings) -> AsyncIterator[list[ConsumerSource]]:
    """The product's consumers, each with how to read what it applied."""
    from branchline_audit.adapters.database import open_role_pool
    from branchline_audit.adapters.reconciling import (
        OWN_SOURCES,
        ledger_applied,
        ledger_applied_among,
        ledger_applied_page,
        ledger_has,
    )
    from branchline_audit.bootstrap import CONSUMER as AUDIT_CONSUMER
    from branchline_followup.adapters.reconciling import (
        read_models_applied,
        read_models_applied_among,
        read_models_applied_page,
        read_models_have,
    )
    from branchline_followup.bootstrap import open_read_model_pool
    from branchline_followup.entrypoints.worker import CONSUMER as FOLLOWUP_CONSUMER
    from branchline_shared.kafka.topics import declare_topics

    topics = declare_topics(settings)
    audit_pool = await open_role_pool(
        settings, settings.audit_db_writer_role, min_size=1, max_size=2
    )
    followup_pool = await open_read_model_pool(settings)
    try:
        yield [
            ConsumerSource(
                AUDIT_CONSUMER,
                topics.audit_consumer_dlq.name,
                lambda: ledger_applied(audit_pool),
                OWN_SOURCES,
                has=lambda ids: ledger_has(audit_pool, ids),
                # the ledger's order is its record of arrival: late is information (#12)
                late_is_record=True,
                applied_among=lambda ids: ledger_applied_among(audit_pool, ids),
                applied_page=lambda after, limit: ledger_applied_page(audit_pool, after, limit),
            ),
            ConsumerSource(
                FOLLOWUP_CONSUMER,
                topics.followup_worker_dlq.name,
                lambda: read_models_applied(followup_pool),
                has=lambda ids: read_models_have(followup_pool, ids),
                applied_among=lambda ids: read_models_applied_among(followup_pool, ids),
                applied_page=lambda after, limit: read_models_applied_page(
                    followup_pool, after, limit
                ),
            ),
        ]
    finally:
        await audit_pool.close()
        await followup_pool.close()


async def reconcile_stack(
    settings: BranchlineSettings,
    *,
    repair: bool = False,
    grace_s: float = 10.0,
    wait_s: float = 0.0,
    page: int | None = None,
    whole: bool = False,
    keep: int | None = None,
    sink: Sink | None = None,
) -> tuple[Reconciliation, Reconciliation | None]:
    """Reconcile (and repair); with ``wait_s``, then wait for every re-published event to be
    applied by the consumers that missed it and reconcile again (the second result).

    A page of ``page`` rows at a time (None: ``reconcile_self_check_order_page``, #12); with
    ``whole``, every store's log and everything applied read at once, as before.

    Paged, at most ``keep`` findings of a kind per consumer are kept (None:
    ``reconcile_findings_kept``), all counted, each told to ``sink`` (the first reconcile's),
    and a repair re-queues every missing event as found. The wait counts again, every
    :data:`WAIT_ROUND_S`, what the first reconcile's logs held (up to each store's last event
    it read) that some consumer has not applied and is not dead-lettered (missing or in
    flight, :func:`~branchline_shared.reconcile.running.reconcile` with ``log_only``), until
    none is: all of them, not only the kept ones, and none held (#12). Whole, it watches the
    missing events of the report (all kept). The second reconcile counts everything."""
    size = None if whole else (page or settings.reconcile_self_check_order_page)
    kept = None if whole else (settings.reconcile_findings_kept if keep is None else keep)
    async with consumer_sources(settings) as consumers:
        stores = store_sources(settings)
        first = await reconcile(
            stores,
            consumers,
            bootstrap=settings.kafka_bootstrap,
            repair=repair,
            grace_s=grace_s,
            page=size,
            keep=kept,
            sink=sink,
        )
        if not (repair and first.requeued and wait_s > 0):
            return first, None
        deadline = time.monotonic() + wait_s
        if size is None:
            wanted = {r.consumer: {e.event_id for e in r.missing} for r in first.reports}
            by_name = {c.name: c for c in consumers}
            while time.monotonic() < deadline:
                if await _all_applied(by_name, wanted):
                    break
                await asyncio.sleep(WAIT_ROUND_S)
        else:
            while time.monotonic() < deadline:
                counted = await reconcile(
                    stores,
                    consumers,
                    bootstrap=settings.kafka_bootstrap,
                    grace_s=grace_s,
                    page=size,
                    keep=0,
                    log_only=True,
                    upto=first.ends,
                )
                if counted.waiting == 0:
                    break
                await asyncio.sleep(WAIT_ROUND_S)
        second = await reconcile(
            stores,
            consumers,
            bootstrap=settings.kafka_bootstrap,
            grace_s=grace_s,
            page=size,
            keep=kept,
        )
        return first, second


WAIT_ROUND_S = 0.5
"""How long ``--wait`` pauses between its counts."""


async def _all_applied(
    consumers: dict[str, ConsumerSource], wanted: dict[str, set[uuid.UUID]]
) -> bool:
    for name, ids in wanted.items():
        has = consumers[name].has
        if not ids:
            continue
        if has is not None:
            ordered = sorted(ids, key=lambda i: i.hex)
            for first in range(0, len(ordered), _HAS_PAGE):
                chunk = ordered[first : first + _HAS_PAGE]
                if len(await has(chunk)) < len(chunk):
                    return False
        elif not ids <= {a.event_id for a in await consumers[name].applied()}:
            return False
    return True


_HAS_PAGE = 1_000
"""How many re-published event ids one question to a consumer asks about."""


def describe(report: ConsumerReport) -> list[str]:
    lines = [f"[bold]{report.consumer}[/]: {report.applied} events applied"]
    for p in report.progress:
        upto = (
            f"{p.contiguous_to.tx_id}:{p.contiguous_to.global_position}"
            if p.contiguous_to
            else "nothing"
        )
        lines.append(
            f"  {p.source:<9} {p.applied}/{p.events} applied; every event up to log position "
            f"{upto}; last global position recorded {p.last_global_position}"
        )
    lines.append(
        f"  missing {report.count('missing')}, dead-lettered {report.count('dead_lettered')}, "
        f"extra {report.count('extra')}, out of order {report.count('out_of_order')}, "
        f"in flight {report.in_flight}"
    )
    if report.count("late"):
        # information, not a difference (#12): repaired, the ledger's record of arrival, or a
        # read record whose order changes nothing
        lines.append(
            f"  late {report.count('late')} (applied after a later version of their stream, then "
            "re-projected in source order, kept as the ledger's record, or a read record whose "
            "order changes nothing: not a difference)"
        )
    for label, kind, ids in (
        (
            "missing",
            "missing",
            [f"{e.source}:{e.log_position.global_position} {e.event_id}" for e in report.missing],
        ),
        (
            "dead-lettered",
            "dead_lettered",
            [
                f"{e.source}:{e.log_position.global_position} {e.event_id}"
                for e in report.dead_lettered
            ],
        ),
        ("extra", "extra", [str(i) for i in report.extra]),
        ("out of order", "out_of_order", [str(i) for i in report.out_of_order]),
        ("late", "late", [str(i) for i in report.late]),
    ):
        shown = ids[:20]
        for item in shown:
            lines.append(f"    {label}: {item}")
        total = report.count(kind)  # every one found, where the report kept some (#12)
        if total > len(shown):
            lines.append(f"    {label}: ... and {total - len(shown)} more")
    return lines


def finding_line(consumer: str, kind: str, item: Finding) -> bytes:
    """One finding as a JSON line (``--findings``): the consumer, the kind, the event id, and
    for an event of a store (missing, dead-lettered) its store and global position."""
    line: dict[str, object] = {"consumer": consumer, "kind": kind}
    if isinstance(item, StoreEvent):
        line |= {
            "event_id": str(item.event_id),
            "source": item.source,
            "global_position": item.log_position.global_position,
        }
    else:
        line["event_id"] = str(item)
    return orjson.dumps(line) + b"\n"


@contextlib.contextmanager
def findings_sink(path: Path | None) -> Iterator[Sink | None]:
    """A sink writing every finding to ``path`` as a JSON line as it is found (``-``: standard
    output), nothing held (#12); None without a path."""
    if path is None:
        yield None
        return
    with contextlib.ExitStack() as opened:
        try:
            out: IO[bytes] = (
                sys.stdout.buffer if str(path) == "-" else opened.enter_context(path.open("wb"))
            )
        except OSError as error:  # before anything is read: a usage error, not a traceback
            raise typer.BadParameter(
                f"cannot write {str(path)!r}: {error.strerror or error}", param_hint="--findings"
            ) from None

        def sink(consumer: str, kind: str, item: Finding) -> None:
            out.write(finding_line(consumer, kind, item))

        try:
            yield sink
        finally:
            out.flush()


def reconcile_command(
    repair: Annotated[
        bool, typer.Option("--repair", help="Re-publish exactly what a consumer misses.")
    ] = False,
    grace: Annotated[
        float,
        typer.Option(
            "--grace", min=0, help="Seconds an event published this recently counts as in flight."
        ),
    ] = 10.0,
    wait: Annotated[
        float,
        typer.Option(
            "--wait", min=0, help="After --repair, wait up to this many seconds and check again."
        ),
    ] = 0.0,
    page: Annotated[
        int | None,
        typer.Option(
            "--page",
            min=1,
            max=100_000,
            help="Read this many events at a time (default: the setting "
            "BRANCHLINE_RECONCILE_SELF_CHECK_ORDER_PAGE, 1000): memory bounded by a page, "
            "not by the history.",
        ),
    ] = None,
    keep: Annotated[
        int | None,
        typer.Option(
            "--keep",
            min=0,
            max=1_000_000,
            help="Keep at most this many findings of each kind per consumer for the report "
            "(every one is counted; default: the setting BRANCHLINE_RECONCILE_FINDINGS_KEPT, "
            "1000).",
        ),
    ] = None,
    findings: Annotated[
        Path | None,
        typer.Option(
            "--findings",
            help="Write every finding to this file as a JSON line as it is found (-: standard "
            "output), none held in memory.",
        ),
    ] = None,
) -> None:
    """Compare every event store with the audit ledger and the followup read models."""
    with findings_sink(findings) as sink:
        first, second = asyncio.run(
            reconcile_stack(
                BranchlineSettings(),
                repair=repair,
                grace_s=grace,
                wait_s=wait,
                page=page,
                keep=keep,
                sink=sink,
            )
        )
    for report in first.reports:
        for line in describe(report):
            console.print(line)
    for source, count in first.requeued.items():
        console.print(f"repair: {count} events of the {source} store queued for publication again")
    final = second or first
    if second is not None:
        console.print(f"after the repair: {second.differences} differences")
        for report in second.reports:
            if report.differences:
                for line in describe(report):
                    console.print(line)
    elif not first.requeued:
        console.print(f"{first.differences} differences")
    else:
        console.print(f"{first.differences} differences (repair queued; run again to check)")
    raise typer.Exit(0 if final.differences == 0 else 1)
