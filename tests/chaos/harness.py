"""The whole system as separate processes on its own PostgreSQL (behind a TCP proxy that can
be cut) and its own broker, kept running by the same supervisor as ``branchline dev``: what
the chaos suite kills, stops, restarts and cuts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from branchline_cli.dev_secrets import provision_dev_secrets
from branchline_cli.devstack import prepare_databases
from branchline_cli.supervision import Supervisor
from branchline_shared.embedded.ports import free_port
from branchline_shared.embedded.postgres import EmbeddedPostgres
from branchline_shared.embedded.tansu import TansuBroker
from branchline_shared.kafka.topics import declare_topics, ensure_topics
from branchline_shared.settings import BranchlineSettings
from tests.support.proxy import CuttableProxy
from tests.support.stack import runtime_dir, unique

# component → the port setting its health (or API) listens on
COMPONENTS = {
    "intake-api": "intake_port",
    "intake-relay": "intake_relay_port",
    "followup-api": "followup_port",
    "followup-worker": "followup_worker_port",
    "audit-consumer": "audit_consumer_port",
}


@dataclass
class Process:
    component: str
    port: int
    log_path: Path
    env: dict[str, str]
    popen: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = field(default=None, repr=False)
    kills: int = 0

    def start(self) -> None:
        if self.log is not None:
            self.log.close()
        self.log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "branchline_cli.main", "run", self.component],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def exit_status(self) -> str:
        code = self.popen.poll() if self.popen is not None else None
        return f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, whatever it was doing is cut off."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=10)
            self.kills += 1

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        if self.log is not None:
            self.log.close()
            self.log = None


class ThreadedProxy:
    """The cuttable TCP proxy on an event loop of its own thread: the database traffic of
    the processes under test never waits for the test's own loop."""

    def __init__(self, target_port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._proxy = CuttableProxy("127.0.0.1", target_port)
        self.port = self._proxy.port

    async def _call(self, coro: Any) -> None:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def start(self) -> None:
        await self._call(self._proxy.start())

    async def cut(self) -> None:
        await self._call(self._proxy.cut())

    async def restore(self) -> None:
        await self._call(self._proxy.restore())

    @staticmethod
    async def _cancel_pipes() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._cancel_pipes(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()


@dataclass
class ChaosStack:
    root: Path
    postgres: EmbeddedPostgres
    broker: TansuBroker
    proxy: ThreadedProxy
    settings: BranchlineSettings
    env: dict[str, str]
    processes: dict[str, Process]
    supervisor: Supervisor
    said: list[str]

    def url(self, component: str) -> str:
        return f"http://127.0.0.1:{self.processes[component].port}"

    async def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = asyncio.get_running_loop().time() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            for process in self.processes.values():
                while True:
                    with contextlib.suppress(httpx.HTTPError):
                        answer = await client.get(f"http://127.0.0.1:{process.port}/readyz")
                        if answer.status_code == 200:
                            break
                    if asyncio.get_running_loop().time() > deadline:
                        raise AssertionError(
                            f"{process.component} not ready; log:\n"
                            + process.log_path.read_text(errors="replace")[-3000:]
                        )
                    await asyncio.sleep(0.3)

    async def restart_broker_empty(self) -> None:
        """Stop the broker and start it again on the same port: its log is gone."""
        self.broker.stop()
        await asyncio.to_thread(self.broker.start)
        await ensure_topics(self.broker.bootstrap, declare_topics(self.settings).all())

    async def restart_postgres(self) -> None:
        """A fast shutdown (open transactions rolled back) and a start on the same port."""
        await asyncio.to_thread(self.postgres.stop, "fast")
        await asyncio.to_thread(self.postgres.start)

    async def stop_processes(self, *components: str) -> None:
        for name in components or tuple(self.processes):
            await asyncio.to_thread(self.processes[name].stop)

    async def kill(self, component: str, *, within_s: float = 20) -> None:
        """SIGKILL ``component`` once it runs (the supervisor may still be restarting it)."""
        process = self.processes[component]
        deadline = asyncio.get_running_loop().time() + within_s
        while not process.alive() and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        process.kill()


def _env(settings: BranchlineSettings, values: dict[str, object]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHLINE_")}
    env.update({f"BRANCHLINE_{k.upper()}": str(v) for k, v in values.items()})
    return env


@contextlib.asynccontextmanager
async def chaos_stack(**overrides: object) -> AsyncIterator[ChaosStack]:
    root = Path(tempfile.mkdtemp(prefix="chaos-", dir=runtime_dir()))
    postgres = EmbeddedPostgres(root / "postgres", free_port())
    await asyncio.to_thread(postgres.start)
    broker = TansuBroker(free_port(), root / "logs" / "tansu.log")
    broker.start()
    proxy = ThreadedProxy(postgres.port)
    await proxy.start()
    tag = unique("c")
    values: dict[str, object] = {
        "data_dir": root / "data",
        "kafka_bootstrap": broker.bootstrap,
        "topic_namespace": f"chaos-{tag}",
        "jwt_secret": "chaos-secret-" + "x" * 40,
        "relay_poll_interval_s": 0.2,
        "reconcile_self_check_interval_s": 5.0,
        "reconcile_grace_s": 3.0,
        "dead_letter_gauge_interval_s": 5.0,
        "db_pool_max": 6,
        "log_level": "INFO",
        **{
            f"{db}_database_url": f"postgresql://postgres@127.0.0.1:{proxy.port}/{tag}_{db}"
            for db in ("intake", "followup", "audit", "keys")
        },
        **{setting: free_port() for setting in COMPONENTS.values()},
        **overrides,
    }
    settings = BranchlineSettings.model_validate(values)
    provision_dev_secrets(settings)  # created once, before the processes read them
    await ensure_topics(broker.bootstrap, declare_topics(settings).all())
    await prepare_databases(settings)
    env = _env(settings, values)
    logs = root / "logs"
    processes = {
        name: Process(name, getattr(settings, port), logs / f"{name}.log", env)
        for name, port in COMPONENTS.items()
    }
    said: list[str] = []
    supervisor = Supervisor(said.append, initial_backoff_s=0.3, max_backoff_s=3.0)
    for process in processes.values():
        process.start()
        supervisor.watch(process.component, process.alive, process.start, process.exit_status)

    async def supervise() -> None:
        while True:
            supervisor.tick()
            await asyncio.sleep(0.2)

    task = asyncio.create_task(supervise())
    stack = ChaosStack(root, postgres, broker, proxy, settings, env, processes, supervisor, said)
    try:
        await stack.wait_ready()
        yield stack
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for process in processes.values():
            await asyncio.to_thread(process.stop)
        await proxy.cut()
        proxy.close()
        broker.stop()
        await asyncio.to_thread(postgres.stop, "immediate")
        if not os.environ.get("BRANCHLINE_CHAOS_KEEP"):
            shutil.rmtree(root, ignore_errors=True)
