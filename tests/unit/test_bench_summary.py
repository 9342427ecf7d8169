"""The benchmark's summary over repeated runs (#12): a figure measured once (the rebuild and
the growth steps join the first repetition only) must not break the summary of a standard run
of three repetitions; `make test`'s smoke profile runs once and never shows it."""

from __future__ import annotations

import pytest
from bench.run import PROFILES, summarise

pytestmark = pytest.mark.unit


def test_a_figure_measured_once_is_summarised_beside_repeated_ones() -> None:
    runs = [
        {"raw_copy": 100_000.0, "bl_batch": 2_000.0, "rebuild": 500.0},
        {"raw_copy": 50_000.0, "bl_batch": 1_500.0},
        {"raw_copy": 80_000.0, "bl_batch": 1_600.0},
    ]
    measures = summarise(runs, PROFILES["standard"])
    assert measures["rebuild"]["runs"] == [500.0]
    assert measures["rebuild"]["ratios"]["raw_copy"]["runs"] == [0.005]
    assert measures["bl_batch"]["ratios"]["raw_copy"]["runs"] == [0.02, 0.03, 0.02]
    assert measures["bl_batch"]["median"] == 1_600.0


def test_profile_batch_sums_each_statements_time_per_batch() -> None:
    from bench.profile_batch import statement_times

    log = "\n".join(
        [
            "2026-12-04 08:00:00 UTC [1] LOG:  duration: 0.500 ms  parse <unnamed>: ",
            "WITH written AS (",
            "    INSERT INTO es_events",
            "2026-12-04 08:00:00 UTC [1] LOG:  duration: 1.500 ms  bind <unnamed>: ",
            "WITH written AS (",
            "2026-12-04 08:00:00 UTC [1] LOG:  duration: 8.000 ms  execute <unnamed>: ",
            "WITH written AS (",
            "2026-12-04 08:00:00 UTC [1] LOG:  duration: 2.000 ms  statement: COMMIT;",
            "2026-12-04 08:00:00 UTC [1] LOG:  duration: 4.000 ms  execute <unnamed>: SELECT 1",
            "2026-12-04 08:00:00 UTC [1] LOG:  checkpoint starting: time",
        ]
    )
    assert statement_times(log, batches=2) == [
        (5.0, 1, "WITH written AS ("),
        (2.0, 1, "SELECT 1"),
        (1.0, 1, "COMMIT;"),
    ]


async def test_the_steady_figures_say_a_consumer_s_fetch_wait_and_its_raises() -> None:
    # #12: a raised fetch wait delays what reaches a consumer at its log end; the bench reads
    # it from the consumer process's /metrics beside its latency figures
    import asyncio

    from bench.branchline_measures import fetch_wait, metric_values
    from bench.run import MEASURES

    text = "\n".join(
        [
            "# HELP branchline_consumer_fetch_wait_ms The consumer's fetch wait",
            "# TYPE branchline_consumer_fetch_wait_ms gauge",
            'branchline_consumer_fetch_wait_ms{consumer="followup-worker"} 400.0',
            'branchline_consumer_fetch_wait_ms{consumer="topic-reader"} 100.0',
            'branchline_consumer_fetch_wait_raises_total{consumer="followup-worker"} 3.0',
            'branchline_consumer_fetch_wait_raises_created{consumer="followup-worker"} 1.7e9',
            "branchline_intake_group_commit_events_sum 12.0",
        ]
    )
    assert metric_values(text, "branchline_consumer_fetch_wait_ms") == [400.0, 100.0]
    assert metric_values(text, "branchline_consumer_fetch_wait_raises_total") == [3.0]
    assert metric_values(text, "branchline_intake_group_commit_events_sum") == [12.0]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\n\r\n" + text.encode())
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        assert await fetch_wait(port) == (400.0, 3.0)
    finally:
        server.close()
        await server.wait_closed()
    assert await fetch_wait(port) is None  # nobody answers: no figure, no failure
    keys = {key for key, _, _ in MEASURES}
    assert {"e2e_followup_fetch_wait_ms", "e2e_audit_fetch_wait_raises"} <= keys
