"""The benchmark's intake split (#12, Round 31): how the intake processes split each intake
line's connections, read from /proc, and reported beside the line in the JSON and the table."""

from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace
from typing import Any, cast

import pytest
from bench.intake_split import (
    ConnectionSplit,
    balanced_clients,
    serving_process_of_clients,
    split_text,
)
from bench.run import PROFILES, render_markdown, summarise
from bench.stack import BenchStack
from tests.support.bench_results import bench_result

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


async def test_the_split_counts_the_connections_each_process_accepted() -> None:
    accepted: list[asyncio.StreamWriter] = []
    all_accepted = asyncio.Event()

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        if len(accepted) == 3:
            all_accepted.set()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    stack = cast(
        BenchStack,
        SimpleNamespace(
            pids={"intake-api": [os.getpid()]}, settings=SimpleNamespace(intake_port=port)
        ),
    )
    clients = []
    try:
        split = ConnectionSplit(stack, wanted=3)
        # this process serves (the clients' own sockets have other local ports), not its
        # children (a suite's PostgreSQL or broker, which ``serving_pids`` would take)
        split.pids = [os.getpid()]
        async with split:
            clients = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
            await all_accepted.wait()
        assert split.split == [3]
        figures: dict[str, float] = {}
        split.record(figures, "bl_single", requests=30)
        assert figures["bl_single_split_0"] == 3
        assert figures["bl_single_cpu_ms_by_process_0"] >= 0
    finally:
        for _reader, writer in clients:
            writer.close()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


def test_the_report_carries_each_runs_split_beside_the_line() -> None:
    runs: list[dict[str, Any]] = [
        {
            "bl_single": 900.0,
            "bl_single_split_0": 40,
            "bl_single_split_1": 24,
            "bl_single_cpu_ms_by_process_0": 0.21,
            "bl_single_cpu_ms_by_process_1": 0.30,
            "bl_batch": 5000.0,
            "bl_batch_split_0": 0,
            "bl_batch_split_1": 1,
            "bl_batch_cpu_ms_by_process_1": 0.05,
        },
        {
            "bl_single": 1000.0,
            "bl_single_split_0": 32,
            "bl_single_split_1": 32,
            "bl_single_cpu_ms_by_process_0": 0.22,
            "bl_single_cpu_ms_by_process_1": 0.28,
            "bl_batch": 5100.0,
            "bl_batch_split_0": 1,
            "bl_batch_split_1": 0,
            "bl_batch_cpu_ms_by_process_0": 0.06,
        },
    ]
    measures = summarise(runs, PROFILES["standard"])
    assert measures["bl_single"]["split"] == [[40, 24], [32, 32]]
    assert measures["bl_single"]["cpu_ms_by_process"] == [[0.21, 0.30], [0.22, 0.28]]
    # a process that served none has no CPU per request
    assert measures["bl_batch"]["cpu_ms_by_process"] == [[None, 0.05], [0.06, None]]
    assert split_text(measures["bl_single"]) == "40/24, 32/32"
    result = bench_result(measures, profile="standard")
    table = render_markdown(result)
    assert "| target | intake split |" in table
    assert "| 40/24, 32/32 |" in table
    assert "| 0/1, 1/0 |" in table


async def test_balanced_connections_are_the_ones_each_process_accepted() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        clients = await balanced_clients([os.getpid()], port, "t", connections=4)
        assert len(clients) == 4
        served = serving_process_of_clients([os.getpid()], port)
        assert {c.writer.get_extra_info("sockname")[1] for c in clients} <= set(served)
        assert set(served.values()) == {os.getpid()}
        for client in clients:
            await client.__aexit__()
        # a process that accepts none (pid 1 holds no socket of ours): it gives up, and
        # leaves no connection open
        with pytest.raises(RuntimeError, match="did not split evenly"):
            await balanced_clients([os.getpid(), 1], port, "t", connections=4, attempts=8)
        await asyncio.sleep(0.1)
        assert not [p for p, pid in serving_process_of_clients([os.getpid()], port).items() if pid]
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
