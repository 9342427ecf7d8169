"""SIGTERM to a worker process (the followup worker, the audit consumer, the standalone intake
relay) or to intake's API (its processes' lifespans) while its start-up waits for a slow
broker: the start is cut short (no client bootstraps through the broker after the signal) and
the process exits 0, as a normal stop does (#12).

A pod killed while its broker is slow gets SIGTERM, then SIGKILL at the end of its grace
period. The workers used to read their signal only once started, so the start ran to its end
through the slow broker first (here: every client's bootstrap held ``DELAY_S`` per answer),
one client after another: the clients bootstrapped after the signal tell it, not a clock
(until Round 35 a 10 s bound against the 3 s answers)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from branchline_shared.embedded.ports import free_port
from tests.integration.test_graceful_shutdown import intake_env, worker_env
from tests.integration.test_kafka_start_cancelled import SlowBroker
from tests.support.stack import Infra, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DELAY_S = 3.0
"""Each broker answer to a client's bootstrap is held this long: the start-up makes several
clients one after another, each bootstrapping through the slow broker (two held answers)."""
HANG_S = 90.0
"""Only against a hang: a start that ran to its end through the slow broker stops too (the
test tells it by the bootstraps it made after the signal, not by a clock)."""


# intake's API runs two processes here (as on a two-core machine), each cut short; the
# followup and audit APIs share its server (``DrainingServer``, tests/unit/test_api_stop.py)
@pytest.mark.parametrize(
    "component", ["audit-consumer", "followup-worker", "intake-relay", "intake-api"]
)
async def test_sigterm_while_starting_behind_a_slow_broker_stops_promptly_and_cleanly(
    infra: Infra, tmp_path: Path, component: str
) -> None:
    async with SlowBroker(infra.kafka_bootstrap, nth=1, delay_s=DELAY_S) as broker:
        settings = make_settings(
            infra,
            tmp_path,
            kafka_bootstrap=f"127.0.0.1:{broker.port}",
            followup_worker_port=free_port(),
            audit_consumer_port=free_port(),
            intake_port=free_port(),
            shutdown_drain_s=2.0,
            reconcile_self_repair=False,
        )
        settings.resolved_master_key()
        log_path = tmp_path / f"{component}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(  # noqa: ASYNC220 - then only a signal and a wait
                [sys.executable, "-m", "branchline_cli.main", "run", component],
                env=(
                    intake_env(settings) | {"BRANCHLINE_INTAKE_PROCESSES": "2"}
                    if component == "intake-api"
                    else worker_env(settings) | {"BRANCHLINE_INTAKE_RELAY_PORT": str(free_port())}
                ),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            # the first client's bootstrap (topic creation's admin) waits for its metadata
            async with asyncio.timeout(60):
                await broker.waiting.wait()
            process.send_signal(signal.SIGTERM)
            signalled = broker.accepted
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(process.wait, HANG_S)
            # Before: the start ran on through the slow broker, client after client.
            bootstrapped = broker.accepted - signalled
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
    output = log_path.read_text(errors="replace")
    assert bootstrapped == 0, f"{bootstrapped} client(s) bootstrapped after SIGTERM\n{output}"
    assert process.returncode == 0, output
    for sign in ("Traceback", "Unclosed", "was never awaited", "Task was destroyed"):
        assert sign not in output, output
