"""End-to-end latency at a steady offered load (open loop).

Requests are sent on a fixed schedule (``rate`` per second, whatever the answers do: a
closed loop would slow down with the system and hide its queueing), each with its own event
id. For each accepted event: the moment its 202 arrived, the moment the followup worker's
transaction applied it (``fu_applied_events.applied_at``) and the moment the audit consumer
appended it to the ledger (``audit_ledger.appended_at``). All clocks are this machine's.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import asyncpg
import orjson

from bench.loadgen import RawHttpClient, percentile
from bench.workload import event_body


@dataclass(frozen=True)
class EndToEnd:
    offered_per_s: float
    answered: int
    http_p99_ms: float
    followup_missing: int  # accepted events the read model still lacked when the wait ended
    audit_missing: int
    followup_p50_ms: float
    followup_p99_ms: float
    audit_p50_ms: float
    audit_p99_ms: float


async def _send_open_loop(
    port: int, token: str, rate: float, duration_s: float, connections: int = 64
) -> tuple[dict[uuid.UUID, float], list[float]]:
    """Sends ``rate`` events per second for ``duration_s``; returns event id -> wall-clock
    time its 202 arrived, and the HTTP latencies (from the scheduled send time)."""
    answered: dict[uuid.UUID, float] = {}
    http: list[float] = []
    idle: asyncio.Queue[RawHttpClient] = asyncio.Queue()
    clients = [RawHttpClient("127.0.0.1", port, token) for _ in range(connections)]
    for client in clients:
        await client.__aenter__()
        idle.put_nowait(client)
    run = uuid.uuid4().hex[:8]
    total = int(rate * duration_s)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.1

    async def one(i: int) -> None:
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        client = await idle.get()  # a free connection (waiting here counts as latency)
        event_id = uuid.uuid4()
        body = orjson.dumps(event_body(i, run) | {"event_id": str(event_id)})
        try:
            status, answer = await client.post("/v1/events", body)
        finally:
            idle.put_nowait(client)
        if status != 202:
            raise AssertionError(f"POST answered {status}: {answer[:300]!r}")
        answered[event_id] = time.time()
        http.append(loop.time() - due)

    try:
        await asyncio.wait_for(
            asyncio.gather(*(one(i) for i in range(total))), timeout=duration_s + 120
        )
    finally:
        for client in clients:
            await client.__aexit__()
    return answered, http


async def _arrivals(
    dsn: str, sql: str, ids: list[uuid.UUID], within_s: float
) -> dict[uuid.UUID, float]:
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + within_s
        while True:
            rows = await conn.fetch(sql, ids)
            if len(rows) >= len(ids) or time.monotonic() > deadline:
                return {r[0]: r[1].timestamp() for r in rows}
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


def _lags(
    answered: dict[uuid.UUID, float], arrived: dict[uuid.UUID, float], gave_up: float
) -> tuple[list[float], int]:
    """Each accepted event's lag, and how many had not arrived when the wait gave up (their
    lag counts as the time until then: a lower bound, so a slow consumer shows as a high
    percentile instead of stopping the benchmark)."""
    lags = sorted(max(0.0, arrived.get(e, gave_up) - t) for e, t in answered.items())
    return lags, len(answered) - len(arrived)


async def end_to_end(
    port: int,
    token: str,
    rate: float,
    duration_s: float,
    followup_dsn: str,
    audit_dsn: str,
) -> EndToEnd:
    answered, http = await _send_open_loop(port, token, rate, duration_s)
    ids = list(answered)
    followup_arrived = await _arrivals(
        followup_dsn,
        "SELECT event_id, applied_at FROM fu_applied_events WHERE event_id = ANY($1)",
        ids,
        within_s=300,
    )
    followup, followup_missing = _lags(answered, followup_arrived, time.time())
    audit_arrived = await _arrivals(
        audit_dsn,
        "SELECT event_id, appended_at FROM audit_ledger WHERE event_id = ANY($1)",
        ids,
        within_s=300,
    )
    audit, audit_missing = _lags(answered, audit_arrived, time.time())
    http.sort()
    return EndToEnd(
        offered_per_s=rate,
        answered=len(answered),
        http_p99_ms=1000 * percentile(http, 0.99),
        followup_missing=followup_missing,
        audit_missing=audit_missing,
        followup_p50_ms=1000 * percentile(followup, 0.50),
        followup_p99_ms=1000 * percentile(followup, 0.99),
        audit_p50_ms=1000 * percentile(audit, 0.50),
        audit_p99_ms=1000 * percentile(audit, 0.99),
    )


async def drain(
    followup_dsn: str, audit_dsn: str, quiet_s: float = 5.0, within_s: float = 600
) -> dict[str, float]:
    """Wait until the followup worker and the audit consumer have caught up (their applied
    counts stop growing); returns how long each took (seconds; 0 when it was not behind)."""
    queries = {
        "followup": (followup_dsn, "SELECT count(*) FROM fu_applied_events"),
        "audit": (audit_dsn, "SELECT count(*) FROM audit_ledger"),
    }
    conns = {name: await asyncpg.connect(dsn) for name, (dsn, _) in queries.items()}
    try:
        first = {n: int(await conns[n].fetchval(q)) for n, (_, q) in queries.items()}
        last, changed = dict(first), {n: time.monotonic() for n in queries}
        started = time.monotonic()
        while time.monotonic() - started < within_s:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            for name, (_, sql) in queries.items():
                count = int(await conns[name].fetchval(sql))
                if count != last[name]:
                    last[name], changed[name] = count, now
            if all(now - t >= quiet_s for t in changed.values()):
                break
        return {
            name: (changed[name] - started) if last[name] != first[name] else 0.0
            for name in queries
        }
    finally:
        for conn in conns.values():
            await conn.close()


async def vacuum(dsns: list[str]) -> float:
    """``VACUUM (ANALYZE)`` each database; returns the seconds it took (#12).

    Run before the steady measure of every repetition: a burst written just before (the
    previous repetition's 1,000-event batches and its 10,000-event client, about 25,000 rows
    into tables that held a few thousand) leaves every table of the stack past autovacuum's
    thresholds, and the first vacuum of freshly written pages rewrites all of them (hint bits,
    visibility map). Left to autovacuum, that debt was paid during the next repetition's steady
    measure and not in the first's. Paid here, in every repetition, the steady measure sees the
    same state each time, and the debt itself is reported (``vacuum_before_steady``), not
    hidden."""
    started = time.perf_counter()
    for dsn in dsns:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute("VACUUM (ANALYZE)")
        finally:
            await conn.close()
    return time.perf_counter() - started
