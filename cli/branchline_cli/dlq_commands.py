"""``branchline dlq list|show|replay``: the dead letters of every consumer, with the reason and
where each came from; one shown as it was dead-lettered (personal values still sealed); and
replayed after a fix, through the consumer's own code, applied once at most."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Sequence
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
    read_dead_letters,
)
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


async def list_dead_letters(
    settings: BranchlineSettings, *, consumer: str | None = None, since: datetime | None = None
) -> list[Listed]:
    async with dead_letter_consumers(settings) as consumers:
        chosen = _chosen(consumers, consumer)
        letters = await read_dead_letters(
            settings.kafka_bootstrap, {c.name: c.topic for c in chosen}, since=since
        )
        applied: set[uuid.UUID] = set()
        for c in chosen:
            ids = [d.event_id for d in letters if d.consumer == c.name and d.event_id]
            if ids:
                applied |= await c.applied_among(ids)
        return [Listed(d, d.event_id is not None and d.event_id in applied) for d in letters]


async def replay_dead_letters(
    settings: BranchlineSettings,
    refs: Sequence[str],
    *,
    consumer: str | None = None,
    since: datetime | None = None,
) -> list[ReplayOutcome]:
    """Replay the named dead letters, or (no ``refs``) every one of ``consumer`` / ``since``;
    each through its consumer's code; an event already applied is left as it is."""
    async with dead_letter_consumers(settings) as consumers:
        chosen = _chosen(consumers, consumer)
        letters = await read_dead_letters(
            settings.kafka_bootstrap, {c.name: c.topic for c in chosen}, since=since
        )
        if refs:
            letters = [_find(letters, ref) for ref in refs]
        outcomes = []
        for letter in letters:
            outcomes.append(await consumers[letter.consumer].replay(letter))
        return outcomes


def _chosen(
    consumers: dict[str, DeadLetterConsumer], consumer: str | None
) -> list[DeadLetterConsumer]:
    if consumer is None:
        return list(consumers.values())
    if consumer not in consumers:
        raise typer.BadParameter(f"unknown consumer {consumer!r}; one of {sorted(consumers)}")
    return [consumers[consumer]]


def _find(letters: Sequence[DeadLetter], ref: str) -> DeadLetter:
    """A dead letter by its ref (``consumer:partition:offset``) or its event id."""
    for letter in letters:
        if letter.ref == ref or (letter.event_id is not None and str(letter.event_id) == ref):
            return letter
    raise typer.BadParameter(f"no dead letter {ref!r} (see `branchline dlq list`)")


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


@dlq_app.command("list")
def list_command(consumer: ConsumerOption = None, since: SinceOption = None) -> None:
    """Every dead letter with its reason and source coordinates (applied or pending)."""
    listed = asyncio.run(
        list_dead_letters(BranchlineSettings(), consumer=consumer, since=parse_since(since))
    )
    for item in listed:
        d = item.letter
        console.print(
            f"{d.ref:<26} {d.dead_lettered_at:%Y-%m-%dT%H:%M:%SZ}  "
            f"{'applied' if item.applied else 'pending':<8} {d.event_type or '-':<28} "
            f"{d.event_id or '-'}  from {_source(d)}\n    reason: {d.reason}"
        )
    waiting = sum(not i.applied for i in listed)
    console.print(f"{len(listed)} dead letters, {waiting} pending")


@dlq_app.command("show")
def show_command(
    ref: Annotated[str, typer.Argument(help="consumer:partition:offset or event id")],
) -> None:
    """One dead letter as it was dead-lettered (personal values still sealed)."""

    async def find() -> DeadLetter:
        settings = BranchlineSettings()
        async with dead_letter_consumers(settings) as consumers:
            letters = await read_dead_letters(
                settings.kafka_bootstrap, {c.name: c.topic for c in consumers.values()}
            )
        return _find(letters, ref)

    typer.echo(json.dumps(describe(asyncio.run(find())), indent=2, ensure_ascii=False))


@dlq_app.command("replay")
def replay_command(
    refs: Annotated[
        list[str] | None, typer.Argument(help="consumer:partition:offset or event id")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dead letter (of --consumer).")] = False,
    consumer: ConsumerOption = None,
    since: SinceOption = None,
) -> None:
    """Replay dead letters after a fix; each event is applied at most once."""
    if not refs and not all_:
        raise typer.BadParameter("name the dead letters to replay, or pass --all")
    outcomes = asyncio.run(
        replay_dead_letters(
            BranchlineSettings(), refs or [], consumer=consumer, since=parse_since(since)
        )
    )
    for outcome in outcomes:
        detail = f": {outcome.detail}" if outcome.detail else ""
        console.print(f"{outcome.letter.ref:<26} {outcome.status}{detail}")
    failed = sum(o.status == "failed" for o in outcomes)
    console.print(f"{len(outcomes)} replayed, {failed} failed")
    raise typer.Exit(1 if failed else 0)
