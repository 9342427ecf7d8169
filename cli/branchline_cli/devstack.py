"""``branchline dev``: the whole system on the embedded default, on loopback, no Docker.

Starts an embedded PostgreSQL and the tansu broker, prepares databases and topics, then runs
every component as a child process (the same ``branchline run`` commands production uses),
shows each becoming ready, and keeps them running: a component, the broker or PostgreSQL that
dies is started again after a pause that grows with repeated crashes, and the terminal says so
(:mod:`branchline_cli.supervision`). A restarted broker has lost its log: topics are re-created,
the outbox relays publish what was not yet published, and the consumers reconcile with the
event stores for the rest. On Ctrl-C it stops them in order: services first (they finish their
work), then the broker, then PostgreSQL (a fast shutdown: nothing half-written).
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from rich.console import Console

from branchline_cli.components import COMPONENTS, ComponentInfo, port_of
from branchline_cli.dev_secrets import provision_dev_secrets
from branchline_cli.supervision import Supervisor
from branchline_shared.embedded.ports import port_is_free
from branchline_shared.embedded.postgres import EmbeddedPostgres
from branchline_shared.embedded.tansu import TansuBroker
from branchline_shared.kafka.topics import declare_topics, ensure_topics
from branchline_shared.settings import BranchlineSettings
from branchline_shared.stop_signals import blocked_in_child, hand_over

console = Console(highlight=False)
_PR_SET_PDEATHSIG = 1


def _as_our_child() -> None:
    """Children get SIGTERM if the dev command itself dies: no orphans, even on SIGKILL."""
    # and start with the stop signals blocked: one sent before a child's first line waits for
    # its hold (``stop_signals``), so it stops cleanly instead of dying by it (#12)
    blocked_in_child()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


@dataclass
class Child:
    info: ComponentInfo
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    log: IO[bytes] | None = field(default=None, repr=False)

    def start(self, env: dict[str, str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "branchline_cli.main", "run", self.info.component.value],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_as_our_child,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_status(self) -> str:
        code = self.process.poll() if self.process is not None else None
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        return f"{how}; last lines of {self.log_path}:\n{self.log_tail(5)}"

    def restart(self, env: dict[str, str]) -> None:
        if self.log is not None:
            self.log.close()
        self.start(env)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> None:
        if self.process is None:
            return
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        if self.log is not None:
            self.log.close()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class StopAsked:
    """SIGINT (Ctrl-C) or SIGTERM to ``branchline dev`` (#12). While the stack starts, the
    signal interrupts the start wherever it is (``KeyboardInterrupt``), and the stack is
    stopped in order. Python's own Ctrl-C only cancels the coroutine inside ``asyncio.run``
    (preparing the databases, creating topics): a step that swallowed the cancel went on, the
    stack came up and kept running, the Ctrl-C lost; a SIGTERM killed the command at once and
    left PostgreSQL and the broker running. Once supervising, the signal ends the loop."""

    def __init__(self) -> None:
        self.asked = False
        self.interrupting = True

    def __call__(self, signum: int, frame: object) -> None:
        self.asked = True
        if self.interrupting:
            self.interrupting = False  # once: the stop that follows is not interrupted
            raise KeyboardInterrupt

    def install(self) -> None:
        signal.signal(signal.SIGINT, self)
        signal.signal(signal.SIGTERM, self)


class DevStack:
    def __init__(self, settings: BranchlineSettings, stop: StopAsked | None = None) -> None:
        self.settings = settings
        self.stop_asked = stop or StopAsked()
        self.data_dir = settings.data_dir.resolve()
        self.logs = self.data_dir / "logs"
        self.postgres = EmbeddedPostgres(self.data_dir / "postgres", settings.postgres_port)
        self.broker = TansuBroker(settings.broker_port, self.logs / "tansu.log")
        self.children: list[Child] = []

    # -- start -------------------------------------------------------------------------
    def _check_ports(self) -> None:
        wanted = {"broker": self.settings.broker_port}
        wanted.update({i.title: port_of(i, self.settings) for i in COMPONENTS})
        if not self.postgres.is_running():
            wanted["PostgreSQL"] = self.settings.postgres_port
        taken = [f"{name} port {port}" for name, port in wanted.items() if not port_is_free(port)]
        if taken:
            raise SystemExit(
                "cannot start: " + ", ".join(taken) + " already in use "
                "(is another `branchline dev` running? ports are set with BRANCHLINE_*_PORT)"
            )

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "BRANCHLINE_DATA_DIR": str(self.data_dir),
                "BRANCHLINE_KAFKA_BOOTSTRAP": self.broker.bootstrap,
                "BRANCHLINE_INTAKE_DATABASE_URL": self.postgres.url("branchline_intake"),
                "BRANCHLINE_FOLLOWUP_DATABASE_URL": self.postgres.url("branchline_followup"),
                "BRANCHLINE_AUDIT_DATABASE_URL": self.postgres.url("branchline_audit"),
                "BRANCHLINE_KEYS_DATABASE_URL": self.postgres.url("branchline_keys"),
                "BRANCHLINE_LOG_LEVEL": self.settings.log_level,
            }
        )
        # The embedded stack is the one place dev-only features (the test clock) are on by
        # default; BRANCHLINE_DEV_MODE=false in the environment still turns them off.
        env.setdefault("BRANCHLINE_DEV_MODE", "true")
        # The drain keeps a stopped service unready (503) while it still serves, so that a load
        # balancer polling /readyz stops sending first; here nothing polls it after the start,
        # and the default 2 s was more than half of an idle Ctrl-C. What protects data comes
        # after the drain and stays: requests in flight finish, consumers commit, relays
        # publish (#12). An operator's own BRANCHLINE_SHUTDOWN_DRAIN_S still wins.
        env.setdefault("BRANCHLINE_SHUTDOWN_DRAIN_S", "0")
        return env

    def child_settings(self, env: dict[str, str]) -> BranchlineSettings:
        overrides = {
            k.removeprefix("BRANCHLINE_").lower(): v
            for k, v in env.items()
            if k.startswith("BRANCHLINE_")
        }
        return BranchlineSettings.model_validate(overrides)

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._check_ports()
        step = time.monotonic()
        console.print(f"[bold]Branchline[/] dev stack, data in {self.data_dir}")
        self.postgres.start()
        console.print(
            f"  [green]✓[/] PostgreSQL      {self.postgres.url()}  ({time.monotonic() - step:.1f}s)"
        )
        step = time.monotonic()
        self.broker.start()
        asyncio.run(ensure_topics(self.broker.bootstrap, declare_topics(self.settings).all()))
        console.print(
            f"  [green]✓[/] Kafka broker    {self.broker.bootstrap} (tansu, in memory)"
            f"  ({time.monotonic() - step:.1f}s)"
        )
        step = time.monotonic()
        provision_dev_secrets(self.settings)  # once, before the children read them
        env = self.child_env()
        asyncio.run(prepare_databases(self.child_settings(env)))
        console.print(f"  [green]✓[/] databases       migrated  ({time.monotonic() - step:.1f}s)")
        for info in COMPONENTS:
            child = Child(info, port_of(info, self.settings), self.logs / f"{info.component}.log")
            child.start(env)
            self.children.append(child)
        self._wait_ready()

    def _wait_ready(self, timeout_s: float = 90) -> None:
        pending = list(self.children)
        deadline = time.monotonic() + timeout_s
        started = time.monotonic()
        with httpx.Client(timeout=1.0) as client:
            while pending:
                for child in list(pending):
                    if not child.alive():
                        raise ChildFailed(child)
                    try:
                        ready = client.get(f"http://127.0.0.1:{child.port}/readyz")
                    except httpx.HTTPError:
                        continue
                    if ready.status_code == 200:
                        pending.remove(child)
                        where = (
                            f"http://127.0.0.1:{child.port}"
                            if child.info.public
                            else f"health on :{child.port}"
                        )
                        console.print(
                            f"  [green]✓[/] {child.info.title:<15} {where}  "
                            f"({time.monotonic() - started:.1f}s)"
                        )
                if pending and time.monotonic() > deadline:
                    raise ChildFailed(pending[0], "not ready in time")
                time.sleep(0.2)

    def banner(self) -> None:
        s = self.settings
        console.print()
        console.print("[bold green]Branchline is up.[/]")
        console.print(f"  intake        http://127.0.0.1:{s.intake_port}/docs")
        console.print(f"  followup      http://127.0.0.1:{s.followup_port}/docs")
        console.print(f"  audit         http://127.0.0.1:{s.audit_port}/docs")
        console.print(f"  PostgreSQL    {self.postgres.url()}")
        console.print(f"  Kafka         {self.broker.bootstrap}")
        console.print(f"  logs          {self.logs}")
        console.print("  a token:      TOKEN=$(.venv/bin/branchline token --role admin --sub me)")
        console.print("Press Ctrl-C to stop.")

    # -- run and stop -----------------------------------------------------------------
    def supervise(self) -> int:
        """Keep everything running until Ctrl-C/SIGTERM (exit 0): a component that dies is
        started again, and so is the broker (its log is gone: topics are re-created, the
        relays publish what was not yet published and the consumers reconcile the rest)."""
        self.stop_asked.interrupting = False
        self.stop_asked.install()
        supervisor = self.supervisor()
        while not self.stop_asked.asked:
            supervisor.tick()
            time.sleep(0.2)
        return 0

    def supervisor(self) -> Supervisor:
        # markup off: the messages quote log lines, whose brackets are not rich markup
        supervisor = Supervisor(lambda message: console.print(message, markup=False))
        supervisor.watch(
            "PostgreSQL",
            self.postgres.is_running,
            self.postgres.start,
            lambda: f"see {self.postgres.log_file}",
        )
        supervisor.watch(
            "Kafka broker",
            self.broker.is_running,
            self._restart_broker,
            lambda: f"its in-memory log is gone; see {self.logs / 'tansu.log'}",
        )
        env = self.child_env()
        for child in self.children:
            supervisor.watch(
                child.info.title,
                child.alive,
                lambda child=child: child.restart(env),  # type: ignore[misc]
                child.exit_status,
            )
        return supervisor

    def _restart_broker(self) -> None:
        self.broker.stop()  # closes the old log file handle
        self.broker.start()
        asyncio.run(ensure_topics(self.broker.bootstrap, declare_topics(self.settings).all()))

    def stop(self) -> None:
        console.print("Stopping: services, then the broker, then PostgreSQL ...")
        for child in self.children:
            child.stop()
        for child in self.children:
            child.wait(timeout=20)
        self.broker.stop()
        self.postgres.stop()
        console.print("[green]Stopped.[/] Nothing left running.")


async def prepare_databases(settings: BranchlineSettings) -> None:
    """Create and migrate every service's database once, before the services race to."""
    from branchline_audit.bootstrap import prepare_database as audit_db
    from branchline_followup.bootstrap import prepare_database as followup_db
    from branchline_intake.bootstrap import prepare_database as intake_db
    from branchline_shared.crypto.keystore import prepare_key_database

    for prepare in (intake_db, followup_db, audit_db):
        await prepare(settings)
    await prepare_key_database(settings.keys_database_url)


class ChildFailed(RuntimeError):
    def __init__(self, child: Child, why: str = "exited during start") -> None:
        super().__init__(f"{child.info.title} {why}")
        self.child = child


def run_dev(settings: BranchlineSettings) -> int:
    stop = StopAsked()
    stop.install()
    stack = DevStack(settings, stop)
    code = 1
    try:
        hand_over()  # a Ctrl-C or SIGTERM while the command was importing: stop now (#12)
        stack.start()
        if stop.asked:  # asked during the start, and something swallowed the interrupt
            raise KeyboardInterrupt
        stack.banner()
        code = stack.supervise()
    except ChildFailed as failure:
        console.print(
            f"[red]✗ {failure}[/]; last lines of {failure.child.log_path}:\n"
            f"{failure.child.log_tail()}"
        )
    except KeyboardInterrupt:
        code = 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the stop
        stack.stop()
    return code
