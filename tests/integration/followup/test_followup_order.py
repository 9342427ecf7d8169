"""The followup read models do not depend on the order events arrive in (#13).

A reconcile repair re-publishes what the broker lost after later events of the same client were
applied; a timer may fire while the worker still lags behind intake. Whatever the order, the
read models must equal a fresh rebuild, which applies every event in source order (the stores'
events merged by recorded time, as ``rebuild followup --from-stores`` reads them). Each test
applies one deterministic history in another order and compares every read-model table.
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from prometheus_client import REGISTRY

from branchline_followup.adapters import rebuild_target
from branchline_followup.adapters.clock_store import PostgresClockOffsets
from branchline_followup.adapters.partitioned_rebuild import ProcessPartitions
from branchline_followup.adapters.pg_schemas import with_search_path
from branchline_followup.adapters.rebuild_target import PostgresRebuildTarget
from branchline_followup.adapters.topic_replay import ReplayedMessage
from branchline_followup.adapters.unit_of_work import PostgresUnitsOfWork, _Holdings
from branchline_followup.application.batches import Delivered, apply_batch
from branchline_followup.application.clock import ServiceClock
from branchline_followup.application.config import policy_from_settings
from branchline_followup.application.projector import Projection, apply_event
from branchline_followup.application.rebuild import rebuild_read_models
from branchline_followup.application.recording import FollowupContext
from branchline_followup.application.timers import run_due_timers
from branchline_followup.bootstrap import open_read_model_pool, prepare_database
from branchline_shared.clock import SystemClock
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.events.typed import decode
from branchline_shared.kafka.wire import SourcePosition
from branchline_shared.postgres.pool import PgPool, open_pool
from branchline_shared.settings import BranchlineSettings
from tests.integration.followup.harness import History, generate_history, now_utc, snapshot
from tests.support.events import ADMIN, recorded_event
from tests.support.stack import Infra, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

Positioned = tuple[RecordedEvent, SourcePosition]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture
def settings(infra: Infra, tmp_path: Path) -> BranchlineSettings:
    return make_settings(infra, tmp_path, followup_supervisors={"rm-7": "sup-1"})


@pytest.fixture
async def context(settings: BranchlineSettings) -> AsyncIterator[FollowupContext]:
    async with _context(settings) as ctx:
        yield ctx


@contextlib.asynccontextmanager
async def _context(settings: BranchlineSettings) -> AsyncIterator[FollowupContext]:
    """The use cases' context on the live read models, without a broker: task creations are
    recorded in followup's store and outbox, nothing relays them."""
    await prepare_database(settings)
    pool = await open_read_model_pool(settings)
    try:
        yield FollowupContext(
            pool=pool,
            units=PostgresUnitsOfWork(pool),
            projection=Projection(
                policy_from_settings(settings), task_creations_topic="followup-events"
            ),
            topic="followup-events",
            clock=ServiceClock(PostgresClockOffsets(pool), SystemClock(), dev_mode=False),
        )
    finally:
        await pool.close()


def positioned(events: Sequence[RecordedEvent]) -> list[Positioned]:
    """Intake's store positions: the history's order is the order intake stored them."""
    return [(e, SourcePosition("intake", n)) for n, e in enumerate(events, start=1)]


class SourceOrder:
    """A rebuild's event source: intake's events and followup's own store merged as
    ``StoreReplay`` merges the stores (recorded time in ms, store, log position)."""

    def __init__(self, intake: Sequence[Positioned], followup_dsn: str) -> None:
        self._intake = intake
        self._dsn = followup_dsn
        self._messages: list[ReplayedMessage] = []

    async def start(self) -> int:
        keyed: list[tuple[tuple[int, int, int, int], ReplayedMessage]] = []
        for event, position in self._intake:
            micros = (event.recorded_at - EPOCH) // timedelta(microseconds=1)
            key = (
                (micros + 500) // 1000,
                0,
                position.global_position,
                position.global_position,
            )
            keyed.append((key, _message("intake", position.global_position, event)))
        conn = await asyncpg.connect(self._dsn)
        try:
            rows = await conn.fetch(
                "SELECT tx_id::text::bigint AS tx, global_position, "
                "(extract(epoch FROM recorded_at) * 1000)::bigint AS ms, envelope::text AS env "
                "FROM es_events"
            )
        finally:
            await conn.close()
        for r in rows:
            event = RecordedEvent.model_validate(orjson.loads(r["env"]))
            key = (r["ms"], 1, r["tx"], r["global_position"])
            keyed.append((key, _message("followup", r["global_position"], event)))
        self._messages = [m for _, m in sorted(keyed, key=lambda k: k[0])]
        return len(self._messages)

    async def messages(self) -> AsyncIterator[ReplayedMessage]:
        messages, self._messages = self._messages, []
        for message in messages:
            yield message

    async def extend_to_current_end(self) -> int:
        return 0

    async def stop(self) -> None:
        return None


def _message(source: str, position: int, event: RecordedEvent) -> ReplayedMessage:
    return ReplayedMessage(
        topic=source,
        partition=0,
        offset=position,
        timestamp=0,
        value=event.model_dump_json().encode(),
        headers=(("source", source.encode()), ("global_position", str(position).encode())),
    )


async def apply_all(ctx: FollowupContext, events: Sequence[Positioned]) -> None:
    for event, position in events:
        await apply_event(ctx.units, decode(event), ctx.projection, position)


async def differences_from_rebuild(
    settings: BranchlineSettings,
    intake: Sequence[Positioned],
    *,
    batch_size: int = 500,
    processes: int = 1,
) -> dict[str, tuple[list[Any], list[Any]]]:
    """Rebuild the read models in source order (its main phase in ``processes`` processes,
    #12); per table, the rows only the read models it replaces have and those only the rebuild
    has (empty: equal)."""
    public = with_search_path(settings.followup_database_url, "public")
    admin: PgPool = await open_pool(public, min_size=1, max_size=2)
    policy = policy_from_settings(settings)
    try:
        result = await rebuild_read_models(
            target=PostgresRebuildTarget(admin, settings.followup_database_url),
            source=SourceOrder(intake, public),
            policy=policy,
            keep_retired=True,
            batch_size=batch_size,
            partitioned=(
                ProcessPartitions(settings, processes, batch_size) if processes > 1 else None
            ),
        )
    finally:
        await admin.close()
    conn = await asyncpg.connect(settings.followup_database_url)
    try:
        incremental = await snapshot(conn, result.retired or "")
        rebuilt = await snapshot(conn, "fu_read")
    finally:
        await conn.close()
    differences: dict[str, tuple[list[Any], list[Any]]] = {}
    for table in sorted(set(incremental) | set(rebuilt)):
        mine, theirs = set(incremental.get(table, [])), set(rebuilt.get(table, []))
        if mine != theirs:
            differences[table] = (sorted(mine - theirs, key=repr), sorted(theirs - mine, key=repr))
    return differences


def history(clients: int, seed: int) -> list[Positioned]:
    generated = generate_history(
        clients, end=now_utc() - timedelta(hours=1), span=timedelta(days=30), seed=seed
    )
    return positioned(generated.events)


@pytest.mark.parametrize("processes", [1, 2])
async def test_in_order_history_equals_rebuild(
    settings: BranchlineSettings, context: FollowupContext, processes: int
) -> None:
    """The reference: applied in source order, the read models equal the rebuild (#12: its
    main phase in one process or two)."""
    events = history(8, seed=11)
    await apply_all(context, events)
    assert await differences_from_rebuild(settings, events, processes=processes) == {}


def with_ratings(events: Sequence[RecordedEvent], seed: int) -> list[RecordedEvent]:
    """The history's events with approvals and re-ratings (D-13 / D-15) of the products its
    sales name (``P-1`` .. ``P-9``), some before the sales, some after (a few of them in
    force later than they occurred), in recorded order."""
    rng = random.Random(seed)
    start = min(e.recorded_at for e in events)
    end = max(e.recorded_at for e in events)
    risks = ["R1", "R2", "R3", "R4", "R5"]
    products: list[RecordedEvent] = []
    for n in range(1, 10):
        product_id = f"P-{n}"
        at = start - timedelta(days=1, minutes=n)
        products.append(
            recorded_event(
                "product.approved",
                {
                    "name": f"Fund {n}",
                    "category": "fund",
                    "risk": rng.choice(risks),
                    "eligible_client_types": ["individual"],
                },
                at=at,
                product_id=product_id,
                actor=ADMIN,
            )
        )
        for version in range(2, 2 + rng.randint(1, 3)):
            at = start + (end - start) * rng.random()
            effective = at + timedelta(days=rng.choice([0, 0, 2, 9]))
            products.append(
                recorded_event(
                    "product.rerated",
                    {
                        "risk": rng.choice(risks),
                        "effective_at": effective.isoformat(),
                        "reason": "equity share changed",
                    },
                    at=at,
                    product_id=product_id,
                    version=version,
                    actor=ADMIN,
                )
            )
    return sorted([*events, *products], key=lambda e: e.recorded_at)


@pytest.mark.parametrize("bounded", [False, True], ids=["remembered", "past-the-bound"])
async def test_a_history_with_product_ratings_equals_rebuild(
    settings: BranchlineSettings,
    context: FollowupContext,
    monkeypatch: pytest.MonkeyPatch,
    bounded: bool,
) -> None:
    """#12: the rebuild answers a product's ratings from memory (a sale's D-15 check, a
    re-rating's latest); with ratings before and after the sales, the holdings, reviews and
    ratings it builds equal the live worker's (read from the table). Past its bound it forgets
    them and reads the table."""
    reads = 0
    if bounded:
        monkeypatch.setattr(rebuild_target, "REMEMBERED_RATINGS", 2)
        real_ratings_of = _Holdings.ratings_of

        async def ratings_of(holdings: Any, product_id: str) -> Any:
            nonlocal reads
            reads += 1
            return await real_ratings_of(holdings, product_id)

        monkeypatch.setattr(_Holdings, "ratings_of", ratings_of)
    generated = generate_history(
        8, end=now_utc() - timedelta(hours=1), span=timedelta(days=30), seed=13
    )
    events = positioned(with_ratings(generated.events, seed=13))
    await apply_all(context, events)
    conn = await asyncpg.connect(settings.followup_database_url)
    try:
        held = await conn.fetchval("SELECT count(*) FROM fu_read.fu_holdings")
        ratings = await conn.fetchval("SELECT count(*) FROM fu_read.fu_product_ratings")
    finally:
        await conn.close()
    assert held > 0  # the history exercises what it tests
    assert ratings > 9
    live_reads, reads = reads, 0
    # in batches of 20: what is forgotten after one is read in the next
    assert await differences_from_rebuild(settings, events, batch_size=20) == {}
    assert (reads > 0) == bounded, (live_reads, reads)  # the rebuild read the table only then


async def test_an_event_republished_after_later_ones_changes_nothing(
    settings: BranchlineSettings, context: FollowupContext
) -> None:
    """What the broker lost arrives after the client's later events (a reconcile repair)."""
    seed = 3  # a history where it makes a difference
    events = history(8, seed=seed)
    rng = random.Random(seed)
    by_client: dict[str, list[int]] = {}
    for index, (event, _) in enumerate(events):
        by_client.setdefault(str(event.client_id), []).append(index)
    # one event of every client (never its last) is held back and arrives at the end
    late = {rng.choice(indices[:-1]) for indices in by_client.values()}
    arrival = [e for i, e in enumerate(events) if i not in late] + [events[i] for i in late]
    await apply_all(context, arrival)
    assert await differences_from_rebuild(settings, events) == {}


async def test_a_client_history_in_any_order_equals_rebuild(
    settings: BranchlineSettings, context: FollowupContext
) -> None:
    """Each client's events shuffled (several re-publishes in a row)."""
    events = history(8, seed=7)
    rng = random.Random(7)
    arrival = list(events)
    rng.shuffle(arrival)
    await apply_all(context, arrival)
    assert await differences_from_rebuild(settings, events) == {}


async def test_a_client_history_in_any_order_applied_in_batches_equals_rebuild(
    settings: BranchlineSettings, context: FollowupContext
) -> None:
    """#12: the worker applies batches, keeping a batch's clients' facts, open tasks and
    journal places in the unit and writing them at its end; an event late within its batch
    or behind an earlier batch still makes its client be projected again in source order."""
    events = history(8, seed=7)
    rng = random.Random(7)
    arrival = list(events)
    rng.shuffle(arrival)
    for start in range(0, len(arrival), 25):
        chunk = [Delivered(e, p) for e, p in arrival[start : start + 25]]
        outcome = await apply_batch(context.units, chunk, context.projection, consumer="test")
        assert not outcome.one_by_one
        assert not outcome.failed
    assert await differences_from_rebuild(settings, events) == {}


def consultation(start: datetime, *, promise_in: timedelta) -> History:
    h = History()
    h.registered("C-1", start)
    h.add(
        "consultation.opened",
        "C-1",
        start + timedelta(minutes=1),
        {"consultation_id": "Q-1", "channel": "online", "question": "s"},
        channel=None,
    )
    # answered before the 30 s clock ran out, with a promise
    h.add(
        "consultation.answered",
        "C-1",
        start + timedelta(minutes=1, seconds=10),
        {
            "consultation_id": "Q-1",
            "answer": "s",
            "promised_by": (start + promise_in).isoformat(),
        },
    )
    return h


async def test_a_timer_that_fires_while_the_worker_lags_changes_nothing(
    settings: BranchlineSettings, context: FollowupContext
) -> None:
    """The 30 s clock of an online consultation runs out while the answer (recorded in time)
    has not reached the worker yet: the timer records ``followup.overdue``; then the answer
    arrives. The rebuild applies the answer first (recorded earlier)."""
    start = now_utc() - timedelta(hours=2)
    events = positioned(consultation(start, promise_in=timedelta(days=2)).events)
    opened, answered = events[:2], events[2:]
    await apply_all(context, opened)
    fired = await run_due_timers(context, start + timedelta(minutes=5))
    assert fired.fired == 1
    await apply_all(context, answered)
    assert await differences_from_rebuild(settings, events) == {}


@pytest.mark.parametrize("seed", [5, 6])
async def test_timers_that_fire_while_the_worker_lags_change_nothing(
    settings: BranchlineSettings, context: FollowupContext, seed: int
) -> None:
    """The worker lags behind intake at three moments; each time the timer runner fires what
    is due by then (its events are recorded now, after every intake event of the history)."""
    events = history(8, seed=seed)
    cuts = sorted(random.Random(seed).sample(range(1, len(events)), 3))
    fired = 0
    for start, end in zip([0, *cuts], [*cuts, len(events)], strict=True):
        await apply_all(context, events[start:end])
        if end < len(events):
            lag_until = events[end][0].recorded_at + timedelta(days=2)
            fired += (await run_due_timers(context, lag_until)).fired
    assert fired > 0
    assert await differences_from_rebuild(settings, events) == {}


async def test_a_fired_timer_stays_fired_when_its_client_is_projected_again(
    settings: BranchlineSettings, context: FollowupContext
) -> None:
    """The consultation's clock ran out and fired (``followup.overdue`` recorded) while the
    answer was lost by the broker; re-published after the client's later visit, the answer
    makes the client be projected again in source order (ADR-0014): the fired timer stays
    fired (its recorded event is applied again), and nothing is recorded twice."""
    start = now_utc() - timedelta(hours=2)
    h = consultation(start, promise_in=timedelta(days=2))
    h.add("visit.arrived", "C-1", start + timedelta(minutes=30), {"visit_id": "V-1"})
    events = positioned(h.events)
    registered, opened, answered, visited = events
    await apply_all(context, [registered, opened, visited])
    assert (await run_due_timers(context, start + timedelta(minutes=5))).fired == 1
    before = REGISTRY.get_sample_value("branchline_followup_reprojections_total") or 0.0
    await apply_all(context, [answered])  # late: the client is projected again
    assert REGISTRY.get_sample_value("branchline_followup_reprojections_total") == before + 1
    fired = await context.pool.fetch(
        "SELECT t.kind FROM fu_timers t JOIN fu_tasks k ON k.id = t.task_id "
        "WHERE t.fired_at IS NOT NULL AND t.fired_event_id IS NOT NULL"
    )
    assert [r["kind"] for r in fired] == ["overdue"]
    overdue = "SELECT count(*) FROM es_events WHERE type = 'followup.overdue'"
    assert await context.pool.fetchval(overdue) == 1
    assert await differences_from_rebuild(settings, events) == {}


TIMES_OF_DAY = [time(0, 30), time(12, 30), time(23, 30)]
"""When a test's history starts: the deadlines end at a day's end, so the time of day decides
whether an escalation (24 h after a deadline) has fired too when the timers run; pinned, so a
test does not depend on when it runs (one failed in CI only after 23:00 UTC)."""


def complex_complaint(
    client_id: str, start: datetime, *, resolved_after: timedelta | None = None
) -> list[Positioned]:
    """A complaint received at ``start``, declared complex a day later (cn_regulator: its
    decision clock moves from 15 to 30 days), resolved ``resolved_after`` if given."""
    h = History()
    h.registered(client_id, start)
    complaint = {"complaint_id": "K-1"}
    h.add(
        "complaint.received",
        client_id,
        start + timedelta(minutes=1),
        {**complaint, "severity": "important", "summary": "s"},
    )
    h.add(
        "complaint.progress_reported",
        client_id,
        start + timedelta(days=1),
        {**complaint, "note": "s", "complex": True},
    )
    if resolved_after is not None:
        h.add(
            "complaint.resolved",
            client_id,
            start + resolved_after,
            {**complaint, "resolution": "s"},
        )
    return positioned(h.events)


async def old_deadlines_fire_first(
    ctx: FollowupContext, events: Sequence[Positioned], start: datetime
) -> None:
    """The worker lags: the timers of the 15-day clock fire before the complex declaration,
    recorded earlier, is applied (then the rest)."""
    await apply_all(ctx, events[:2])
    fired = await run_due_timers(ctx, start + timedelta(days=16, hours=1))
    assert fired.fired >= 2  # the response and the decision clocks went overdue
    await apply_all(ctx, events[2:])


@pytest.mark.parametrize("time_of_day", TIMES_OF_DAY)
async def test_a_deadline_moved_after_its_timer_fired_is_armed_again_in_any_order(
    infra: Infra, tmp_path: Path, time_of_day: time
) -> None:
    """cn_regulator: a complaint's decision clock (15 days) passes while the worker lags; the
    complaint was declared complex before that (recorded earlier, applied later): the clock
    moves to 30 days. The timer of the new deadline must stay armed, whichever of the two
    events is applied first (the rebuild applies the complex declaration first). At 23:30 the
    decision's escalation has fired too, and stays recorded whichever order (D-08)."""
    settings = make_settings(infra, tmp_path, followup_branch_profiles={"BR-001": "cn_regulator"})
    start = datetime.combine(now_utc().date() - timedelta(days=40), time_of_day, tzinfo=UTC)
    events = complex_complaint("C-3", start)
    async with _context(settings) as ctx:
        await old_deadlines_fire_first(ctx, events, start)
        armed = await ctx.pool.fetchval(
            "SELECT count(*) FROM fu_timers t JOIN fu_tasks k ON k.id = t.task_id "
            "WHERE k.kind = 'complaint_decision' AND t.kind = 'overdue' "
            "AND t.fired_at IS NULL AND t.fire_at = k.due_at AND k.due_at > $1",
            start + timedelta(days=29),
        )
        assert armed == 1
    assert await differences_from_rebuild(settings, events) == {}


@pytest.mark.parametrize("time_of_day", TIMES_OF_DAY)
async def test_a_deadline_moved_after_its_timer_fired_then_closed_ends_as_the_rebuild(
    infra: Infra, tmp_path: Path, time_of_day: time
) -> None:
    """As above, and the complaint is then resolved within its new 30 days: the timer the
    complex declaration armed again is dropped with the closure. The rebuild applies the
    declaration and the resolution before the worker's recorded ``followup.overdue`` of the
    old deadline (recorded later); that event must not bring back a fired overdue timer the
    worker no longer has. Pinned to each time of day (whether the escalation fired too)."""
    settings = make_settings(infra, tmp_path, followup_branch_profiles={"BR-001": "cn_regulator"})
    start = datetime.combine(now_utc().date() - timedelta(days=40), time_of_day, tzinfo=UTC)
    events = complex_complaint("C-4", start, resolved_after=timedelta(days=20))
    async with _context(settings) as ctx:
        await old_deadlines_fire_first(ctx, events, start)
        decision_timers = await ctx.pool.fetch(
            "SELECT t.kind FROM fu_timers t JOIN fu_tasks k ON k.id = t.task_id "
            "WHERE k.kind = 'complaint_decision' AND k.status <> 'open'"
        )
    # escalated for good only when the escalation had fired (D-08); never an overdue row
    assert "overdue" not in [r["kind"] for r in decision_timers]
    assert await differences_from_rebuild(settings, events) == {}


def complaints_in_one_batch(start: datetime) -> list[Positioned]:
    """Complaints whose receipt, service-loop facts and steps all fall in one rebuild batch:
    a full closed loop; a step ahead of its receipt (it changes nothing, live or rebuilt); a
    receipt received again (its severity and topic upserted); two complaints of one client
    interleaved."""
    h = History()
    later = iter(start + timedelta(minutes=n) for n in range(1, 100))

    def complaint(client_id: str, kind: str, complaint_id: str, **data: Any) -> None:
        h.add(f"complaint.{kind}", client_id, next(later), {"complaint_id": complaint_id, **data})

    for client_id in ("C-1", "C-2", "C-3"):
        h.registered(client_id, next(later))
    received = {"severity": "important", "summary": "s"}
    complaint(
        "C-1",
        "received",
        "K-1",
        **received,
        problem="fees_charges",
        product_id="P-1",
        product_category="fund",
    )
    complaint("C-1", "acknowledged", "K-1", owner_id="rm-7")
    complaint("C-1", "progress_reported", "K-1", note="n", complex=True)
    complaint("C-1", "resolved", "K-1", resolution="s", root_cause="process")
    complaint("C-1", "confirmed_by_client", "K-1", satisfied=False)
    complaint("C-1", "closed", "K-1")
    complaint("C-2", "acknowledged", "K-2", owner_id="rm-7")  # ahead of its receipt
    complaint("C-2", "received", "K-2", **received)
    complaint("C-2", "resolved", "K-2", resolution="s")
    complaint("C-2", "received", "K-2", severity="urgent", summary="s", topic="fees")
    complaint("C-3", "received", "K-3", **received)
    complaint("C-3", "received", "K-4", severity="general", summary="s")
    complaint("C-3", "acknowledged", "K-4", owner_id="rm-7")
    complaint("C-3", "acknowledged", "K-3", owner_id="rm-8")
    complaint("C-3", "resolved", "K-3", resolution="s", root_cause="staff")
    complaint("C-3", "closed", "K-4")
    return positioned(h.events)


def service_loop_in_one_batch(start: datetime) -> list[Positioned]:
    """Corrective actions, renegotiations and closures whose writes all fall in one rebuild
    batch (D-09, D-17): an action planned then completed twice (the first instant kept); a
    completion ahead of its plan (it changes nothing, live or rebuilt); a plan sent again
    (the first kept); renegotiations of a complaint's and a consultation's promise; a client
    closed, reopened and closed again; a client closed before it is registered (no row yet:
    nothing to update, then registered without a reason); a client closed after its facts
    changed in the batch."""
    h = History()
    later = iter(start + timedelta(minutes=n) for n in range(1, 100))
    due = (start + timedelta(days=20)).isoformat()

    def add(kind: str, client_id: str, **data: Any) -> None:
        h.add(kind, client_id, next(later), data)

    def action(kind: str, client_id: str, action_id: str, **data: Any) -> None:
        add(
            f"complaint.corrective_action_{kind}",
            client_id,
            complaint_id="K-1",
            action_id=action_id,
            **data,
        )

    plan = {"root_cause": "process", "action_kind": "process_change", "due_at": due}
    add("client.account_closed", "C-3", reason="relocation")  # before its registration
    for client_id in ("C-1", "C-2", "C-3", "C-4"):
        h.registered(client_id, next(later))
    add("complaint.received", "C-1", complaint_id="K-1", severity="important", summary="s")
    action("planned", "C-1", "CA-1", owner_id="sup-1", **plan)
    action("completed", "C-1", "CA-2")  # ahead of its plan
    action("planned", "C-1", "CA-2", owner_id="sup-2", **plan)
    action("completed", "C-1", "CA-1")
    action("planned", "C-1", "CA-1", owner_id="sup-9", **{**plan, "root_cause": "staff"})
    action("completed", "C-1", "CA-1", note="again")
    renegotiation = {
        "promised_by": (start + timedelta(days=3)).isoformat(),
        "reason": "awaiting_third_party",
        "alternative": "sealed",
        "client_told": True,
    }
    add("complaint.promise_renegotiated", "C-1", complaint_id="K-1", **renegotiation)
    add("consultation.opened", "C-2", consultation_id="Q-2", channel="phone", question="s")
    add("consultation.promise_renegotiated", "C-2", consultation_id="Q-2", **renegotiation)
    add("client.account_closed", "C-2", reason="dissatisfaction")
    add("client.account_reopened", "C-2", reason="client_request")
    add("client.account_closed", "C-2", reason="dormant")
    add("client.risk_assessed", "C-4", level="C3")  # its facts changed in the batch
    add("client.account_closed", "C-4", reason="relocation")
    add("client.account_reopened", "C-1", reason="closed_in_error")  # never closed
    return positioned(h.events)


async def test_corrective_actions_renegotiations_closures_in_one_batch_equal_rebuild(
    settings: BranchlineSettings, context: FollowupContext
) -> None:
    """#12: the rebuild sends a corrective action's writes (plan, completion) as one statement
    text, the renegotiations and the closures with its batch's other writes; rebuilt in one
    batch, they equal the live worker's, each applied in order."""
    events = service_loop_in_one_batch(now_utc() - timedelta(days=1))
    start = events[0][0].occurred_at
    await apply_all(context, events)
    assert await differences_from_rebuild(settings, events) == {}
    conn = await asyncpg.connect(settings.followup_database_url)
    try:
        actions = {
            r["action_id"]: (r["owner_id"], r["root_cause"], r["completed_minute"])
            for r in await conn.fetch(
                "SELECT action_id, owner_id, root_cause, "
                "(extract(epoch FROM completed_at - $1) / 60)::int AS completed_minute "
                "FROM fu_read.fu_corrective_actions",
                start,
            )
        }
        subjects = sorted(
            r[0] for r in await conn.fetch("SELECT subject FROM fu_read.fu_renegotiations")
        )
        reasons = {
            r[0]: r[1]
            for r in await conn.fetch(
                "SELECT client_id, account_closure_reason FROM fu_read.fu_clients"
            )
        }
    finally:
        await conn.close()
    # CA-1 completed at the first completion (minute 9 after the first event); CA-2's
    # completion came before its plan: nothing completed
    assert actions == {"CA-1": ("sup-1", "process", 9), "CA-2": ("sup-2", "process", None)}
    assert subjects == ["complaint:K-1", "consultation:Q-2"]
    assert reasons == {"C-1": None, "C-2": "dormant", "C-3": None, "C-4": "relocation"}


async def test_complaints_with_several_steps_in_one_batch_equal_rebuild(
    settings: BranchlineSettings, context: FollowupContext
) -> None:
    """#12: the rebuild sends a complaint's writes (receipt, service-loop facts, steps) as one
    statement text with its batch's other writes, in the order they were made; rebuilt in one
    batch, the complaints equal the live worker's, each write applied in order (a step ahead
    of its receipt changes nothing, the last step's status stands)."""
    events = complaints_in_one_batch(now_utc() - timedelta(days=1))
    await apply_all(context, events)
    assert await differences_from_rebuild(settings, events) == {}
    conn = await asyncpg.connect(settings.followup_database_url)
    try:
        rows = {
            r["complaint_id"]: dict(r)
            for r in await conn.fetch(
                "SELECT complaint_id, severity, topic, status, owner_id, satisfied, problem, "
                "product_id, product_category, complex_case, root_cause, closed_at IS NOT NULL "
                "AS closed FROM fu_read.fu_complaints"
            )
        }
    finally:
        await conn.close()
    assert rows["K-1"] == {
        "complaint_id": "K-1",
        "severity": "important",
        "topic": None,
        "status": "closed",
        "owner_id": "rm-7",
        "satisfied": False,
        "problem": "fees_charges",
        "product_id": "P-1",
        "product_category": "fund",
        "complex_case": True,
        "root_cause": "process",
        "closed": True,
    }
    k2 = rows["K-2"]
    assert (k2["status"], k2["owner_id"], k2["severity"], k2["topic"]) == (
        "resolved",
        None,  # acknowledged before it was received: nothing to update then
        "urgent",
        "fees",
    )
    assert (rows["K-3"]["status"], rows["K-3"]["owner_id"], rows["K-3"]["root_cause"]) == (
        "resolved",
        "rm-8",
        "staff",
    )
    assert (rows["K-4"]["status"], rows["K-4"]["owner_id"]) == ("closed", "rm-7")


def _staff_event(
    staff_id: str, event_type: str, at: datetime, version: int, data: dict[str, Any]
) -> RecordedEvent:
    return RecordedEvent(
        event_id=uuid.uuid4(),
        type=event_type,
        occurred_at=at,
        recorded_at=at,
        source="intake",
        actor=ADMIN,
        staff_id=staff_id,
        stream_id=f"staff-{staff_id}",
        stream_version=version,
        data=data,
    )


def with_staff_and_privacy(events: Sequence[RecordedEvent], seed: int) -> list[RecordedEvent]:
    """The history's events with staff events (D-14, D-16: training, declared interests,
    gifts accepted and declined naming the history's clients, a member of staff's access
    request answered, another's cancelled by their erasure) and clients' access requests,
    erasure requests and legal holds (D-04, D-11), at random instants, in recorded order."""
    rng = random.Random(seed)
    start = min(e.recorded_at for e in events)
    end = max(e.recorded_at for e in events)
    clients = sorted({e.client_id for e in events if e.client_id is not None})
    added: list[RecordedEvent] = []
    versions: dict[str, int] = {}

    def at() -> datetime:
        return start + (end - start) * rng.random()

    def staff(staff_id: str, event_type: str, when: datetime, **data: Any) -> RecordedEvent:
        versions[staff_id] = versions.get(staff_id, 0) + 1
        event = _staff_event(staff_id, event_type, when, versions[staff_id], data)
        added.append(event)
        return event

    for n in range(6):
        rm = f"rm-{n}"
        staff(
            rm,
            "staff.training_recorded",
            at(),
            hours=str(rng.randint(1, 9)),
            topic="suitability",
            completed_at=at().isoformat(),
        )
        staff(rm, "staff.interest_declared", at(), product_id=f"P-{n + 1}", nature="holds units")
        for accepted in (True, False):
            staff(
                rm,
                "staff.gift_recorded",
                at(),
                client_id=rng.choice(clients),
                value=str(rng.choice([50, 5000, 20000])),
                accepted=accepted,
                description="a tea set",
            )
    asked = staff("rm-1", "staff.data_access_requested", start, channel="walk_in")
    staff(
        "rm-1",
        "staff.personal_data_accessed",
        at(),
        purpose="D-04",
        request_event_id=str(asked.event_id),
    )
    staff("rm-2", "staff.data_access_requested", start, channel="phone")
    staff("rm-2", "staff.erasure_requested", at(), reason="left", employment_ended_at=None)
    staff("rm-3", "staff.data_access_requested", at(), channel="app")
    for n, client_id in enumerate(rng.sample(clients, 4)):
        added.append(
            recorded_event(
                "client.data_access_requested",
                {"channel": "walk_in"},
                at=at(),
                client_id=client_id,
                version=900 + n,
            )
        )
        added.append(
            recorded_event(
                "audit.legal_hold_placed",
                {"hold_id": f"H-{n}", "reason": "litigation"},
                at=at(),
                client_id=client_id,
                version=910 + n,
                actor=ADMIN,
            )
        )
    added.append(
        recorded_event(
            "client.erasure_requested",
            {"reason": "asked"},
            at=end,
            client_id=clients[0],
            version=999,
        )
    )
    return sorted([*events, *added], key=lambda e: e.recorded_at)


async def test_a_history_rebuilt_in_several_processes_equals_the_live_one(
    settings: BranchlineSettings, context: FollowupContext
) -> None:
    """#12 ``--processes N``: the richest history here (complaints, surveys, the service loop,
    stage changes by time, product ratings before and after sales, staff events with gifts
    escalated for clients and staff access requests, clients' access and erasure requests and
    legal holds) rebuilt in one, two and three processes equals what the live worker built:
    each process applies its clients', every one the shelf's and staff events, one writes
    their rows."""
    generated = generate_history(
        16, end=now_utc() - timedelta(hours=1), span=timedelta(days=30), seed=17
    )
    events = positioned(with_staff_and_privacy(with_ratings(generated.events, seed=17), seed=17))
    await apply_all(context, events)
    conn = await asyncpg.connect(settings.followup_database_url)
    try:
        counts = {
            table: await conn.fetchval(f"SELECT count(*) FROM fu_read.{table}")
            for table in (
                "fu_holdings",
                "fu_product_ratings",
                "fu_staff",
                "fu_staff_training",
                "fu_staff_privacy",
                "fu_staff_gift_clients",
                "fu_complaints",
                "fu_surveys",
                "fu_privacy",
            )
        }
        staff_tasks = await conn.fetchval(
            "SELECT count(*) FROM fu_read.fu_tasks WHERE client_id LIKE '#staff/%'"
        )
        gift_tasks = await conn.fetchval(
            "SELECT count(*) FROM fu_read.fu_tasks WHERE client_id NOT LIKE '#staff/%' "
            "AND rule = 'D-16'"
        )
        reviews = await conn.fetchval("SELECT count(*) FROM fu_read.fu_tasks WHERE rule = 'D-15'")
    finally:
        await conn.close()
    # the history exercises what it tests
    assert all(counts.values()), counts
    assert staff_tasks >= 2
    assert gift_tasks > 0
    assert reviews > 0
    for processes in (1, 2, 3):
        # each rebuild is compared with the read models it replaces: the live ones, then the
        # previous rebuild's
        differences = await differences_from_rebuild(
            settings, events, batch_size=50, processes=processes
        )
        assert differences == {}, (processes, differences)
