"""``branchline dlq list|show|replay``: the dead letters of every consumer, with the reason and
where each came from; one shown as it was dead-lettered (personal values still sealed); and
replayed after a fix, through the consumer's own code, applied once at most."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from branchline_shared.kafka.dead_letter_log import (
    AppliedAmong,
    DeadLetter,
    Replayer,
    ReplayOutcome,
    parse_dead_letter,
)
from branchline_shared.kafka.topic_reading import PAGE_RECORDS, topic_pages
from branchline_shared.settings import BranchlineSettings

dlq_app = typer.Typer(
    help="Dead letters: list them, show one, replay after a fix.", no_args_is_help=True
)
console = Console(highlight=False)

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str | None, *, now: datetime | None = None) -> datetime | None:
    """An RFC 3339 time, or an age such as ``30m``, ``2h``, ``7d``."""
    if text is None:
        return None
    match = _RELATIVE.match(text.strip())
    if match:
        seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither an RFC 3339 time nor an age like 30m, 2h, 7d"
        ) from None
    if moment.tzinfo is None:
        raise typer.BadParameter("the time must carry an offset (e.g. Z or +08:00)")
    return moment


@dataclass(frozen=True)
class DeadLetterConsumer:
    name: str
    topic: str
    applied_among: AppliedAmong
    replay: Replayer


@contextlib.asynccontextmanager
async def dead_letter_consumers(
    settings: BranchlineSettings,
) -> AsyncIterator[dict[str, DeadLetterConsumer]]:
    """Every consumer with a dead-letter topic, and how to check and replay into it."""
    from branchline_audit.adapters.database import open_role_pool
    from branchline_audit.adapters.reconciling import ledger_has
    from branchline_audit.adapters.signing_key import SigningKeyError
    from branchline_audit.application.ports import AuditLedger
    from branchline_audit.application.replaying import replay_into_ledger
    from branchline_audit.bootstrap import CONSUMER as AUDIT_CONSUMER
    from branchline_audit.bootstrap import audit_context
    from branchline_followup.adapters.reconciling import read_models_have
    from branchline_followup.adapters.unit_of_work import PostgresUnitsOfWork
    from branchline_followup.application.config import policy_from_settings
    from branchline_followup.application.projector import Projection
    from branchline_followup.application.replaying import replay_into_read_models
    from branchline_followup.bootstrap import open_read_model_pool, prepare_database
    from branchline_followup.entrypoints.worker import CONSUMER as FOLLOWUP_CONSUMER
    from branchline_shared.clock import SystemClock
    from branchline_shared.kafka.topics import declare_topics

    topics = declare_topics(settings)
    await prepare_database(settings)
    audit_pool = await open_role_pool(
        settings, settings.audit_db_writer_role, min_size=1, max_size=2
    )
    followup_pool = await open_read_model_pool(settings)
    clock = SystemClock()
    checked: list[AuditLedger] = []

    async def replay_audit(letter: DeadLetter) -> ReplayOutcome:
        # The service's ledger, its reads of holds held against the signed checkpoints (D-11,
        # #12; Round 31): built at the first audit letter replayed, so the followup's letters
        # need no signing key; without it an audit letter is refused, nothing appended.
        if not checked:
            try:
                checked.append(audit_context(settings, audit_pool, clock).ledger)
            except SigningKeyError as error:
                return ReplayOutcome(letter, "failed", f"refused (D-11): {error}")
        return await replay_into_ledger(checked[0], clock, letter)

    projection = Projection(policy_from_settings(settings))
    try:
        yield {
            AUDIT_CONSUMER: DeadLetterConsumer(
                AUDIT_CONSUMER,
                topics.audit_consumer_dlq.name,
                lambda ids: ledger_has(audit_pool, ids),
                replay_audit,
            ),
            FOLLOWUP_CONSUMER: DeadLetterConsumer(
                FOLLOWUP_CONSUMER,
                topics.followup_worker_dlq.name,
                lambda ids: read_models_have(followup_pool, ids),
                lambda letter: replay_into_read_models(
                    PostgresUnitsOfWork(followup_pool), projection, letter
                ),
            ),
        }
    finally:
        await audit_pool.close()
        await followup_pool.close()


@dataclass(frozen=True)
class Listed:
    letter: DeadLetter
    applied: bool


async def letter_pages(
    bootstrap: str,
    chosen: Sequence[DeadLetterConsumer],
    *,
    since: datetime | None = None,
    page: int = PAGE_RECORDS,
) -> AsyncGenerator[list[DeadLetter]]:
    """The dead letters of ``chosen``, each consumer's topic in turn, a page of at most
    ``page`` records at a time (:func:`topic_pages`: each partition in offset order, up to its
    end when the read began), those dead-lettered before ``since`` left out: a caller holds a
    page, not the topic (#12)."""
    for c in chosen:
        async with contextlib.aclosing(topic_pages(bootstrap, [c.topic], page=page)) as pages:
            async for records in pages:
                letters = [parse_dead_letter(c.name, record) for record in records]
                if since is not None:
                    letters = [d for d in letters if d.dead_lettered_at >= since]
                if letters:
                    yield letters


async def listed_pages(
    bootstrap: str,
    chosen: Sequence[DeadLetterConsumer],
    *,
    since: datetime | None = None,
    page: int = PAGE_RECORDS,
) -> AsyncGenerator[list[Listed]]:
    """:func:`letter_pages`, each page's letters with whether their consumer applied their
    event since (one question per page)."""
    by_name = {c.name: c for c in chosen}
    async with contextlib.aclosing(
        letter_pages(bootstrap, chosen, since=since, page=page)
    ) as pages:
        async for letters in pages:
            applied: set[uuid.UUID] = set()
            for name in {d.consumer for d in letters}:
                ids = [d.event_id for d in letters if d.consumer == name and d.event_id]
                if ids:
                    applied |= await by_name[name].applied_among(ids)
            yield [Listed(d, d.event_id is not None and d.event_id in applied) for d in letters]


async def list_dead_letters(
    settings: BranchlineSettings,
    *,
    consumer: str | None = None,
    since: datetime | None = None,
    page: int = PAGE_RECORDS,
) -> list[Listed]:
    """Every dead letter (of ``consumer``, ``since``), gathered from :func:`listed_pages`."""
    listed: list[Listed] = []
    async with dead_letter_consumers(settings) as consumers:
        chosen = _chosen(consumers, consumer)
        async with contextlib.aclosing(
            listed_pages(settings.kafka_bootstrap, chosen, since=since, page=page)
        ) as pages:
            async for items in pages:
                listed.extend(items)
    return listed


async def replay_dead_letters(
    settings: BranchlineSettings,
    refs: Sequence[str],
    *,
    consumer: str | None = None,
    since: datetime | None = None,
    page: int = PAGE_RECORDS,
    told: Callable[[ReplayOutcome], None] | None = None,
) -> list[ReplayOutcome]:
    """Replay the named dead letters, or (no ``refs``) every one of ``consumer`` / ``since``;
    each through its consumer's code; an event already applied is left as it is. Read a page
    at a time (#12): with ``refs``, only the named letters are held (replayed in the order
    named, each found once); without, each page's letters are replayed as it is read. Each
    outcome is told to ``told`` as it comes; the outcomes are returned unless ``told`` takes
    them (then an empty list: nothing held)."""
    outcomes: list[ReplayOutcome] = []

    def tell(outcome: ReplayOutcome) -> None:
        if told is None:
            outcomes.append(outcome)
        else:
            told(outcome)

    async with dead_letter_consumers(settings) as consumers:
        chosen = _chosen(consumers, consumer)
        if refs:
            named = await _find_all(settings.kafka_bootstrap, chosen, refs, since=since, page=page)
            for letter in named:
                tell(await consumers[letter.consumer].replay(letter))
            return outcomes
        async with contextlib.aclosing(
            letter_pages(settings.kafka_bootstrap, chosen, since=since, page=page)
        ) as pages:
            async for letters in pages:
                for letter in letters:
                    tell(await consumers[letter.consumer].replay(letter))
        return outcomes


async def _find_all(
    bootstrap: str,
    chosen: Sequence[DeadLetterConsumer],
    refs: Sequence[str],
    *,
    since: datetime | None = None,
    page: int = PAGE_RECORDS,
) -> list[DeadLetter]:
    """The dead letters ``refs`` name, in that order, read a page at a time and stopping
    once each is found; an unknown one is a usage error naming it."""
    wanted = list(dict.fromkeys(refs))
    found: dict[str, DeadLetter] = {}
    async with contextlib.aclosing(
        letter_pages(bootstrap, chosen, since=since, page=page)
    ) as pages:
        async for letters in pages:
            for letter in letters:
                for ref in wanted:
                    if ref not in found and _names(letter, ref):
                        found[ref] = letter
            if len(found) == len(wanted):
                break
    for ref in wanted:
        if ref not in found:
            raise typer.BadParameter(f"no dead letter {ref!r} (see `branchline dlq list`)")
    return [found[ref] for ref in refs]


def _chosen(
    consumers: dict[str, DeadLetterConsumer], consumer: str | None
) -> list[DeadLetterConsumer]:
    if consumer is None:
        return list(consumers.values())
    if consumer not in consumers:
        raise typer.BadParameter(f"unknown consumer {consumer!r}; one of {sorted(consumers)}")
    return [consumers[consumer]]


def _names(letter: DeadLetter, ref: str) -> bool:
    """Whether ``ref`` names ``letter``: its ref (``consumer:partition:offset``) or its event id."""
    return letter.ref == ref or (letter.event_id is not None and str(letter.event_id) == ref)


def _source(letter: DeadLetter) -> str:
    return f"{letter.source_topic}:{letter.source_partition}:{letter.source_offset}"


def describe(letter: DeadLetter) -> dict[str, Any]:
    """A dead letter as JSON: the message as it was (sealed values stay sealed)."""
    try:
        value: Any = orjson.loads(letter.value) if letter.value is not None else None
    except orjson.JSONDecodeError:
        value = letter.value.decode(errors="replace") if letter.value is not None else None
    return {
        "ref": letter.ref,
        "consumer": letter.consumer,
        "dead_lettered_at": letter.dead_lettered_at.isoformat(),
        "reason": letter.reason,
        "source": {
            "topic": letter.source_topic,
            "partition": letter.source_partition,
            "offset": letter.source_offset,
        },
        "dead_letter_topic": {
            "topic": letter.topic,
            "partition": letter.partition,
            "offset": letter.offset,
        },
        "event_id": str(letter.event_id) if letter.event_id else None,
        "type": letter.event_type,
        "key": letter.key.decode(errors="replace") if letter.key is not None else None,
        "headers": {k: v.decode(errors="replace") for k, v in letter.original_headers()},
        "value": value,
    }


ConsumerOption = Annotated[
    str | None,
    typer.Option("--consumer", help="Only this consumer's (audit-consumer, followup-worker)."),
]
SinceOption = Annotated[
    str | None,
    typer.Option("--since", help="Only those dead-lettered since: RFC 3339, or an age (2h, 7d)."),
]
PageOption = Annotated[
    int,
    typer.Option(
        "--page",
        min=1,
        max=100_000,
        help="Read this many dead-letter records at a time: memory bounded by a page, not by "
        "the topic.",
    ),
]


@dlq_app.command("list")
def list_command(
    consumer: ConsumerOption = None, since: SinceOption = None, page: PageOption = PAGE_RECORDS
) -> None:
    """Every dead letter with its reason and source coordinates (applied or pending), each
    consumer's in the order of its topic, printed a page at a time."""
    moment = parse_since(since)

    async def run() -> tuple[int, int]:
        settings = BranchlineSettings()
        total = waiting = 0
        async with dead_letter_consumers(settings) as consumers:
            chosen = _chosen(consumers, consumer)
            async with contextlib.aclosing(
                listed_pages(settings.kafka_bootstrap, chosen, since=moment, page=page)
            ) as pages:
                async for items in pages:
                    for item in items:
                        console.print(list_line(item))
                    total += len(items)
                    waiting += sum(not i.applied for i in items)
        return total, waiting

    total, waiting = asyncio.run(run())
    console.print(f"{total} dead letters, {waiting} pending")


def list_line(item: Listed) -> str:
    d = item.letter
    return (
        f"{d.ref:<26} {d.dead_lettered_at:%Y-%m-%dT%H:%M:%SZ}  "
        f"{'applied' if item.applied else 'pending':<8} {d.event_type or '-':<28} "
        f"{d.event_id or '-'}  from {_source(d)}\n    reason: {d.reason}"
    )


@dlq_app.command("show")
def show_command(
    ref: Annotated[str, typer.Argument(help="consumer:partition:offset or event id")],
    page: PageOption = PAGE_RECORDS,
) -> None:
    """One dead letter as it was dead-lettered (personal values still sealed)."""

    async def find() -> DeadLetter:
        settings = BranchlineSettings()
        async with dead_letter_consumers(settings) as consumers:
            found = await _find_all(
                settings.kafka_bootstrap, list(consumers.values()), [ref], page=page
            )
        return found[0]

    typer.echo(json.dumps(describe(asyncio.run(find())), indent=2, ensure_ascii=False))


@dlq_app.command("replay")
def replay_command(
    refs: Annotated[
        list[str] | None, typer.Argument(help="consumer:partition:offset or event id")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead letter (of --consumer).")] = False,
    consumer: ConsumerOption = None,
    since: SinceOption = None,
    page: PageOption = PAGE_RECORDS,
) -> None:
    """Replay dead letters after a fix; each event is applied at most once."""
    if not refs and not all_:
        raise typer.BadParameter("name the dead letters to replay, or pass --all")
    counts = {"replayed": 0, "failed": 0}

    def told(outcome: ReplayOutcome) -> None:
        detail = f": {outcome.detail}" if outcome.detail else ""
        console.print(f"{outcome.letter.ref:<26} {outcome.status}{detail}")
        counts["replayed"] += 1
        counts["failed"] += outcome.status == "failed"

    asyncio.run(
        replay_dead_letters(
            BranchlineSettings(),
            refs or [],
            consumer=consumer,
            since=parse_since(since),
            page=page,
            told=told,
        )
    )
    console.print(f"{counts['replayed']} replayed, {counts['failed']} failed")
    raise typer.Exit(1 if counts["failed"] else 0)
