"""``branchline dlq list|show|replay`` read a dead-letter topic a page of records at a time
(``--page``) and act on each page as it is read, not on the topic gathered whole (#12); bad
input is a usage error, no traceback. A broker stand-in with one partition of twelve dead
letters, the consumers' stand-ins."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest
from tests.support.one_partition import OnePartitionConsumer
from typer.testing import CliRunner

from branchline_cli import dlq_commands
from branchline_cli.dlq_commands import DeadLetterConsumer, dlq_app
from branchline_shared.kafka import topic_reading
from branchline_shared.kafka.dead_letter_log import DeadLetter, ReplayOutcome

TOPIC = "branchline.followup-worker.dlq.v1"
IDS = [uuid.UUID(int=n) for n in range(1, 13)]


class Partition(OnePartitionConsumer):
    """One partition of twelve dead letters; ``events`` says what was fetched and replayed,
    in order."""

    def __init__(self, events: list[str]) -> None:
        super().__init__(TOPIC)
        self.events = events

    def log_length(self) -> int:
        return len(IDS)

    def record(self, offset: int) -> Any:
        return SimpleNamespace(
            topic=TOPIC,
            partition=0,
            offset=offset,
            timestamp=1_790_000_000_000 + offset,
            key=None,
            value=b"{}",
            headers=[
                ("event_id", str(IDS[offset]).encode()),
                ("type", b"client.registered"),
                ("dlq_reason", f"handler failed: {offset}".encode()),
            ],
        )

    def fetched(self, first: int, end: int) -> None:
        if end > first:
            self.events.append(f"fetch {first}-{end - 1}")


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    partition = Partition(seen)
    monkeypatch.setattr(topic_reading, "AIOKafkaConsumer", lambda **_: partition)

    async def applied_among(ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        seen.append(f"asked {len(ids)}")
        return {i for i in ids if i.int % 3 == 0}

    async def replay(letter: DeadLetter) -> ReplayOutcome:
        seen.append(f"replay {letter.offset}")
        return ReplayOutcome(letter, "applied")

    @contextlib.asynccontextmanager
    async def consumers(settings: Any) -> AsyncIterator[dict[str, DeadLetterConsumer]]:
        yield {
            "followup-worker": DeadLetterConsumer("followup-worker", TOPIC, applied_among, replay)
        }

    monkeypatch.setattr(dlq_commands, "dead_letter_consumers", consumers)
    return seen


def run(*args: str) -> Any:
    return CliRunner().invoke(dlq_app, list(args))


def test_list_prints_every_letter_asking_a_page_at_a_time(events: list[str]) -> None:
    result = run("list", "--page", "5")
    assert result.exit_code == 0, result.output
    assert "12 dead letters, 8 pending" in result.output
    assert all(str(i) in result.output for i in IDS)
    # each page's ids asked about as it is read, never the topic's twelve at once
    assert events == [
        "fetch 0-4",
        "asked 5",
        "fetch 5-9",
        "asked 5",
        "fetch 10-11",
        "asked 2",
    ]


def test_replay_all_replays_each_page_as_it_is_read(events: list[str]) -> None:
    result = run("replay", "--all", "--page", "4")
    assert result.exit_code == 0, result.output
    assert "12 replayed, 0 failed" in result.output
    assert events[:6] == ["fetch 0-3", *(f"replay {n}" for n in range(4)), "fetch 4-7"]


def test_show_and_replay_by_name_stop_reading_once_found(events: list[str]) -> None:
    result = run("show", str(IDS[2]), "--page", "2")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["dead_letter_topic"]["offset"] == 2
    assert events == ["fetch 0-1", "fetch 2-3"]
    events.clear()
    result = run("replay", "followup-worker:0:3", str(IDS[0]), "--page", "2")
    assert result.exit_code == 0, result.output
    assert events == ["fetch 0-1", "fetch 2-3", "replay 3", "replay 0"]  # in the order named


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("list", "--page", "0"), "--page"),
        (("list", "--page", "many"), "--page"),
        (("list", "--consumer", "nobody"), "unknown consumer 'nobody'"),
        (("show", "followup-worker:0:99"), "no dead letter 'followup-worker:0:99'"),
        (("replay",), "name the dead letters to replay, or pass --all"),
    ],
)
def test_bad_input_is_a_usage_error_without_a_traceback(
    events: list[str], args: tuple[str, ...], says: str
) -> None:
    result = run(*args)
    assert result.exit_code == 2
    assert says in " ".join(result.output.split())
    assert "Traceback" not in result.output
