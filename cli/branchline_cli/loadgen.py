"""``branchline loadgen``: realistic client journeys sent to intake at a steady rate.

Each simulated client walks the catalogue's example journey (:data:`EXAMPLE_JOURNEY`: a
registration with consent and sealed personal data, identity and risk assessment, an
appointment and a visit, consultations, a sale with its prerequisites, a complaint to its
close, surveys, ...), the branch system's steps only, in the order intake's rules accept,
sometimes several steps in one batch. Times are the journey's own, moved to end now and
compressed into ``journey_span`` (intake refuses backdated and future events, D-05b).

Every event carries an event id chosen here (from the seed), so a request whose answer was
lost (a killed process, a cut connection) is sent again with the same id until it is answered:
intake's idempotency makes that safe, and the generator knows exactly which events were
answered 202 (what the chaos suite then looks for everywhere). Reusable from Python
(:class:`LoadGenerator`) by the chaos suite and the benchmarks.
"""

from __future__ import annotations

import asyncio
import copy
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
import typer

from branchline_cli.example_journey import EXAMPLE_JOURNEY, EXAMPLE_SHELF, JourneyStep
from branchline_shared.events.catalogue import SUPERVISOR_EVENT_TYPES, SYSTEM_EVENT_TYPES

_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")
RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})


def branch_steps() -> list[JourneyStep]:
    """The journey's steps a branch system sends (not those Branchline records itself, nor
    a supervisor's approvals)."""
    excluded = SYSTEM_EVENT_TYPES | SUPERVISOR_EVENT_TYPES
    return [s for s in EXAMPLE_JOURNEY if s.type not in excluded]


def shelf_steps() -> list[JourneyStep]:
    """The product shelf and staff records the journeys rely on (D-13, D-14: the product
    approved, the RM qualified), those before the journey starts; sent once, by an admin."""
    first = min(datetime.fromisoformat(s.occurred_at) for s in EXAMPLE_JOURNEY)
    return [s for s in EXAMPLE_SHELF if datetime.fromisoformat(s.occurred_at) < first]


@dataclass(frozen=True)
class Accepted:
    event_id: uuid.UUID
    type: str
    client_id: str
    stream_id: str
    stream_version: int
    global_position: int


@dataclass
class LoadResult:
    """What the generator sent and what intake answered."""

    accepted: dict[uuid.UUID, Accepted] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)
    """Answers other than 202, by status and rule/kind (e.g. ``409 D-05``)."""
    unanswered: list[uuid.UUID] = field(default_factory=list)
    """Events never answered within the retry budget (stored or not: reconcile knows)."""
    requests: int = 0
    retries: int = 0
    batches: int = 0
    clients: int = 0
    elapsed_s: float = 0.0

    @property
    def sent(self) -> int:
        return len(self.accepted) + sum(self.refused.values()) + len(self.unanswered)

    def summary(self) -> str:
        refused = ", ".join(f"{k}: {v}" for k, v in self.refused.most_common()) or "none"
        rate = len(self.accepted) / self.elapsed_s if self.elapsed_s else 0.0
        return (
            f"sent={self.sent} accepted={len(self.accepted)} refused={sum(self.refused.values())} "
            f"unanswered={len(self.unanswered)} requests={self.requests} batches={self.batches} "
            f"retries={self.retries} clients={self.clients} elapsed={self.elapsed_s:.1f}s "
            f"accepted/s={rate:.1f} (refused: {refused})"
        )


class _TimeMap:
    """The journey's times, moved so the last ends at ``anchor`` and compressed to ``span``."""

    def __init__(self, steps: Sequence[JourneyStep], anchor: datetime, span: timedelta) -> None:
        times = [datetime.fromisoformat(s.occurred_at) for s in steps]
        self._start, self._end = min(times), max(times)
        self._anchor = anchor
        width = (self._end - self._start).total_seconds() or 1.0
        self._factor = span.total_seconds() / width

    def moment(self, text: str) -> str:
        original = datetime.fromisoformat(text)
        seconds = (original - self._end).total_seconds() * self._factor
        return (self._anchor + timedelta(seconds=seconds)).astimezone(UTC).isoformat()

    def data(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: self.data(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.data(v) for v in value]
        if isinstance(value, str) and _DATETIME.match(value):
            return self.moment(value)
        return value


class _Pacer:
    """A steady rate of events, shared by every client (a token bucket, no bursts)."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._next = time.monotonic()
        self._lock = asyncio.Lock()

    async def take(self, events: int) -> None:
        async with self._lock:
            now = time.monotonic()
            self._next = max(self._next, now)
            wait = self._next - now
            self._next += events * self._interval
        if wait > 0:
            await asyncio.sleep(wait)


class LoadGenerator:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        rate: float,
        duration_s: float,
        clients: int = 8,
        seed: int = 1,
        batch_share: float = 0.2,
        max_batch: int = 8,
        journey_span: timedelta = timedelta(minutes=10),
        retry_for_s: float = 60.0,
        branch_id: str = "BR-001",
        client_prefix: str = "LG",
        admin_token: str | None = None,
    ) -> None:
        self._base_url = base_url
        self._token = token
        self._rate = rate
        self._duration_s = duration_s
        self._clients = clients
        self._seed = seed
        self._batch_share = batch_share
        self._max_batch = max_batch
        self._span = journey_span
        self._retry_for_s = retry_for_s
        self._branch_id = branch_id
        self._prefix = client_prefix
        self._steps = branch_steps()
        self._admin_token = admin_token
        self._client_count = 0
        self.result = LoadResult()
        self.stopping = asyncio.Event()
        self.batches_in_flight = 0
        """Batches sent and not answered yet (a fault script may strike mid-batch)."""

    def _next_client(self) -> tuple[str, random.Random]:
        """The next client's id and its own random source: client k of a seed always has the
        same event ids and batches, whichever coroutine happens to run it."""
        self._client_count += 1
        number = self._client_count
        return f"{self._prefix}-{self._seed}-{number:06d}", random.Random(f"{self._seed}/{number}")

    def _body(
        self, step: JourneyStep, client_id: str, times: _TimeMap, rng: random.Random
    ) -> dict[str, Any]:
        return {
            "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "type": step.type,
            "occurred_at": times.moment(step.occurred_at),
            "client_id": client_id,
            "branch_id": self._branch_id,
            "channel": step.channel,
            "actor": {"id": step.actor_id, "role": step.actor_role},
            "data": times.data(copy.deepcopy(dict(step.data))),
        }

    async def run(self) -> LoadResult:
        """Send journeys for ``duration_s`` (or until :attr:`stopping` is set); then wait for
        the answers still outstanding (each retried within ``retry_for_s``)."""
        started = time.monotonic()
        deadline = started + self._duration_s
        pacer = _Pacer(self._rate)
        async with httpx.AsyncClient(
            base_url=self._base_url,
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=httpx.Timeout(10.0, connect=3.0),
            limits=httpx.Limits(max_connections=self._clients),
        ) as http:
            if self._admin_token is not None:
                await self._set_up_shelf(http)
            await asyncio.gather(
                *(self._client_loop(http, pacer, deadline) for _ in range(self._clients))
            )
        self.result.elapsed_s = time.monotonic() - started
        return self.result

    async def _set_up_shelf(self, http: httpx.AsyncClient) -> None:
        """Approve the journey's product and qualify its RM (already done by an earlier run:
        refused, and counted as ``shelf`` refusals, which is fine)."""
        steps = shelf_steps()
        times = _TimeMap(
            [*steps, *self._steps], datetime.now(UTC) - timedelta(seconds=5), self._span
        )
        for step in steps:
            body = {
                "type": step.type,
                "occurred_at": times.moment(step.occurred_at),
                step.subject_field: step.subject_id,
                "actor": {"id": step.actor_id, "role": step.actor_role},
                "data": times.data(copy.deepcopy(dict(step.data))),
            }
            response = await http.post(
                "/v1/events", json=body, headers={"Authorization": f"Bearer {self._admin_token}"}
            )
            if response.status_code != 202:
                self._refused(response.status_code, f"shelf {_problem_kind(response)}", 1)

    async def _client_loop(self, http: httpx.AsyncClient, pacer: _Pacer, deadline: float) -> None:
        while time.monotonic() < deadline and not self.stopping.is_set():
            client_id, rng = self._next_client()
            self.result.clients += 1
            times = _TimeMap(self._steps, datetime.now(UTC) - timedelta(seconds=5), self._span)
            bodies = [self._body(s, client_id, times, rng) for s in self._steps]
            index = 0
            while index < len(bodies) and time.monotonic() < deadline:
                if self.stopping.is_set():
                    return
                size = 1
                if rng.random() < self._batch_share:
                    size = rng.randint(2, self._max_batch)
                chunk = bodies[index : index + size]
                await pacer.take(len(chunk))
                refused = await self._send(http, chunk)
                index += len(chunk)
                if refused:
                    break  # later steps build on the refused one: a new client instead

    async def _send(self, http: httpx.AsyncClient, chunk: list[dict[str, Any]]) -> bool:
        """Send one event or a batch until answered; True if anything was refused."""
        batch = len(chunk) > 1
        path, payload = (
            ("/v1/events:batch", {"events": chunk}) if batch else ("/v1/events", chunk[0])
        )
        give_up = time.monotonic() + self._retry_for_s
        backoff = 0.2
        while True:
            self.result.requests += 1
            self.batches_in_flight += batch
            try:
                response = await http.post(path, json=payload)
            except httpx.HTTPError:
                response = None
            finally:
                self.batches_in_flight -= batch
            if response is not None and response.status_code not in RETRYABLE:
                break
            if time.monotonic() > give_up:
                self.result.unanswered.extend(uuid.UUID(b["event_id"]) for b in chunk)
                return True
            self.result.retries += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
        if batch:
            self.result.batches += 1
            if response.status_code != 200:
                self._refused(response.status_code, _problem_kind(response), len(chunk))
                return True
            items = response.json()["results"]
            refused = False
            for body, item in zip(chunk, items, strict=True):
                if item.get("status") == 202:
                    self._accepted(body, item)
                else:
                    refused = True
                    self._refused(int(item.get("status", 0)), _kind(item), 1)
            return refused
        if response.status_code == 202:
            self._accepted(chunk[0], response.json())
            return False
        self._refused(response.status_code, _problem_kind(response), 1)
        return True

    def _accepted(self, body: dict[str, Any], answer: dict[str, Any]) -> None:
        event_id = uuid.UUID(answer["event_id"])
        self.result.accepted[event_id] = Accepted(
            event_id,
            body["type"],
            body["client_id"],
            answer["stream_id"],
            int(answer["stream_version"]),
            int(answer["global_position"]),
        )

    def _refused(self, status: int, kind: str, count: int) -> None:
        self.result.refused[f"{status} {kind}"] += count


def _kind(problem: dict[str, Any]) -> str:
    return str(problem.get("rule") or problem.get("kind") or problem.get("title") or "?")


def _problem_kind(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return "?"
    return _kind(body) if isinstance(body, dict) else "?"


def loadgen_command(
    rate: Annotated[float, typer.Option("--rate", min=0.1, help="Events per second.")],
    duration: Annotated[float, typer.Option("--duration", min=0.1, help="Seconds to run.")],
    clients: Annotated[int, typer.Option("--clients", min=1, help="Concurrent clients.")] = 8,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same journeys and ids.")] = 1,
    url: Annotated[str | None, typer.Option("--url", help="Intake's base URL.")] = None,
    batch_share: Annotated[
        float, typer.Option("--batch-share", min=0, max=1, help="Share of batched requests.")
    ] = 0.2,
) -> None:
    """Send realistic client journeys to intake at a steady rate; count what was answered 202."""
    from branchline_cli.example_journey import EXAMPLE_ADMIN_ID
    from branchline_shared.http.auth import Role
    from branchline_shared.http.token_keys import token_codec
    from branchline_shared.settings import BranchlineSettings

    settings = BranchlineSettings()
    codec = token_codec(settings, "intake")
    ttl = min(timedelta(seconds=duration + 3600), codec.max_lifetime)
    token = codec.issue(
        "loadgen",
        [Role.BRANCH_SYSTEM],
        ttl=ttl,
        now=datetime.now(UTC),
        branch_id="BR-001",  # the journeys' branch (LoadGenerator's default)
    )
    # the governance steps name the examples' admin as their actor: an admin speaks as itself
    admin = codec.issue(EXAMPLE_ADMIN_ID, [Role.ADMIN], ttl=ttl, now=datetime.now(UTC))
    generator = LoadGenerator(
        url or f"http://127.0.0.1:{settings.intake_port}",
        token,
        rate=rate,
        duration_s=duration,
        clients=clients,
        seed=seed,
        batch_share=batch_share,
        admin_token=admin,
    )
    result = asyncio.run(generator.run())
    typer.echo(result.summary())
