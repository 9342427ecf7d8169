"""The benchmark's own stack: exactly what `branchline dev` runs (embedded PostgreSQL, the
tansu broker, every component as its own process), on free ports in a temporary folder."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from branchline_shared.embedded.ports import free_port
from branchline_shared.embedded.postgres import prepare_runtime_dir
from branchline_shared.http.auth import Role, utcnow
from branchline_shared.http.token_keys import token_codec
from branchline_shared.settings import BranchlineSettings

if TYPE_CHECKING:
    from branchline_cli.devstack import DevStack

LOG_LINE_PREFIX = "%m:%p:%d:"
"""The benchmark server's log line prefix: the time, the process and the **database** of
each line, so that ``bench.branchline_measures.reruns_in_log`` counts intake's errors alone
(no space or shell character in it: it travels in ``pg_ctl -o``)."""

PORT_SETTINGS = (
    "INTAKE_PORT",
    "FOLLOWUP_PORT",
    "AUDIT_PORT",
    "FOLLOWUP_WORKER_PORT",
    "AUDIT_CONSUMER_PORT",
    "BROKER_PORT",
    "POSTGRES_PORT",
    "INTAKE_RELAY_PORT",  # bench.stack.relay_in_own_process's relay (its health)
)


@dataclass(frozen=True)
class BenchStack:
    settings: BranchlineSettings
    admin_url: str  # the embedded server's `postgres` database
    token: str  # a branch system's bearer token
    env: dict[str, str]  # what the components were started with
    pids: dict[str, list[int]]  # component -> its processes
    postgres_log: Path | None = None  # the embedded server's log (its errors: ``reruns``)

    def cpu_seconds(self, component: str) -> float:
        """User + system CPU time used so far by a component's processes and their children
        (several intake processes are children of the one the stack started; Linux)."""
        return sum(process_cpu_seconds(pid) for pid in self.all_pids(component))

    def database_url(self, name: str) -> str:
        return self.admin_url.rsplit("/", 1)[0] + f"/{name}"

    async def database(self, name: str, migrated: str | None = None) -> str:
        """Database ``name`` on the stack's server, created and, with ``migrated`` (a key of
        ``bench.probe_stack.MIGRATIONS``), migrated by the product's own migration runner as
        the probes' are (``ProbeStack.database``); its address."""
        from bench.probe_stack import migrated_database

        return await migrated_database(self.settings, self.database_url(name), migrated)

    def all_pids(self, component: str) -> list[int]:
        """A component's processes and their children (as ``cpu_seconds`` counts them)."""
        pids = list(self.pids.get(component, []))
        for pid in list(pids):
            pids.extend(child_pids(pid))
        return pids

    @contextlib.contextmanager
    def paused(self, *components: str) -> Iterator[None]:
        """The components' processes stopped (SIGSTOP) while the body runs, continued
        (SIGCONT) when it ends, whatever ends it: a consumer held still while a backlog is
        written for it (``bench.latency.drain_capacity``). Only the benchmark's own children."""
        pids = [pid for component in components for pid in self.all_pids(component)]
        stopped: list[int] = []
        try:
            for pid in pids:
                os.kill(pid, signal.SIGSTOP)
                stopped.append(pid)
            yield
        finally:
            for pid in stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)


def process_cpu_seconds(pid: int) -> float:
    """From /proc/PID/stat (utime + stime, in clock ticks): 0 where that is not readable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def stack_env(base: Path, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a bench stack's components read their settings from (they are child
    processes): its own ports and data folder under ``base``, then ``extra_env``."""
    env = {f"BRANCHLINE_{name}": str(free_port()) for name in PORT_SETTINGS}
    return env | {
        "BRANCHLINE_DATA_DIR": str(base / "data"),
        "BRANCHLINE_LOG_LEVEL": "WARNING",
        "BRANCHLINE_DB_POOL_MAX": "20",
        # The benchmark measures throughput: the abuse limits would measure themselves.
        "BRANCHLINE_RATE_LIMIT_ENABLED": "false",
        "BRANCHLINE_ACCESS_LOG_ENABLED": "false",
        # The stack's stop: nothing balances load onto its APIs, so the drain before they
        # stop (2 s by default, /readyz 503 for load balancers) only held up each stop (#12).
        "BRANCHLINE_SHUTDOWN_DRAIN_S": "0",
        **(extra_env or {}),
    }


def relay_in_own_process(stack: DevStack) -> None:
    """The intake relay moved out of the API (#12, Round 31): the started stack's intake API
    restarted told not to relay (``BRANCHLINE_RELAY_ENABLED=false`` for it alone: the followup
    worker's relay reads the same setting), and ``branchline run intake-relay`` started as a
    child of its own (the API's processes wake it by NOTIFY after their commits). The relay
    starts first and waits for the lock the API's relay gives up when it stops."""
    from branchline_cli.components import Component, ComponentInfo
    from branchline_cli.devstack import Child

    env = stack.child_env()
    relay = Child(
        ComponentInfo(Component.INTAKE_RELAY, "intake_relay_port", "intake relay", False),
        stack.settings.intake_relay_port,
        stack.logs / "intake-relay.log",
    )
    relay.start(env)
    api = next(c for c in stack.children if c.info.component is Component.INTAKE_API)
    api.stop()
    api.wait(timeout=20)
    api.start(env | {"BRANCHLINE_RELAY_ENABLED": "false"})
    others = [c for c in stack.children if c is not api]
    stack.children = [api, relay]
    try:
        stack._wait_ready()  # the bench's own stack
    finally:
        stack.children = [api, relay, *others]


@contextlib.asynccontextmanager
async def running_stack(
    extra_env: dict[str, str] | None = None,
    pg_settings: dict[str, str] | None = None,
    *,
    relay_process: bool = False,
) -> AsyncIterator[BenchStack]:
    base = Path(tempfile.mkdtemp(prefix="branchline-bench-"))
    prepare_runtime_dir(base)
    env = stack_env(base, extra_env)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    from branchline_cli.devstack import DevStack

    settings = BranchlineSettings()
    stack = DevStack(settings)
    # The commit time of the transaction that wrote a row is when a new snapshot can first see
    # it: bench.latency reads it (pg_xact_commit_timestamp) to time visibility exactly. Only
    # here: it costs a little per commit (an SLRU entry) and nothing in the product reads it.
    stack.postgres.extra_settings["track_commit_timestamp"] = "on"
    # That commit time is early by the commit's own WAL flush: timing WAL I/O (pg_stat_io's
    # WAL rows) lets the benchmark bound it (bench.latency.wal_flushes). Two clock reads per
    # WAL write and sync; only here, as above.
    stack.postgres.extra_settings["track_wal_io_timing"] = "on"
    # Each log line names its database: the benchmark counts intake's reruns from the
    # server's errors (bench.branchline_measures.reruns_in_log), across all its processes.
    stack.postgres.extra_settings["log_line_prefix"] = LOG_LINE_PREFIX
    # A probe's server settings (e.g. bench.probe_post_tail --pg wal_init_zero=off).
    stack.postgres.extra_settings |= pg_settings or {}
    try:
        # DevStack is synchronous (it runs its own event loops): keep it off ours.
        await asyncio.to_thread(stack.start)
        if relay_process:
            await asyncio.to_thread(relay_in_own_process, stack)
        token = token_codec(settings, "intake").issue(
            "bench-branch",
            [Role.BRANCH_SYSTEM],
            ttl=timedelta(hours=6),
            now=utcnow(),
            branch_id="BR-1",  # the workload's branch (bench/workload.py)
        )
        as_run = settings.model_copy(
            update={
                "kafka_bootstrap": stack.broker.bootstrap,
                **{
                    f"{db}_database_url": stack.postgres.url(f"branchline_{db}")
                    for db in ("intake", "followup", "audit", "keys")
                },
            }
        )
        pids: dict[str, list[int]] = {}
        for child in stack.children:
            if child.process is not None:
                pids.setdefault(child.info.component.value, []).append(child.process.pid)
        if stack.broker.pid is not None:
            pids["broker"] = [stack.broker.pid]
        yield BenchStack(
            as_run,
            stack.postgres.url("postgres"),
            token,
            stack.child_env(),
            pids,
            stack.postgres.log_file,
        )
    finally:
        await asyncio.to_thread(stack.stop)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        shutil.rmtree(base, ignore_errors=True)
