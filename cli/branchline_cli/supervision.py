"""Keeping a set of processes running: one that dies is started again, after a pause that
doubles with every crash in a row (a component that cannot start does not spin), and the
operator is told each time. Used by ``branchline dev`` and by the chaos suite.

Pure bookkeeping around two callables per process (is it alive, start it again), with an
injectable clock, so the policy is tested without processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Supervised:
    name: str
    alive: Callable[[], bool]
    restart: Callable[[], None]
    """Start it again; raises if that failed (it is then tried again later)."""
    exit_status: Callable[[], str] = lambda: "exited"
    backoff_s: float = 0.0
    next_try: float | None = None
    up_since: float = 0.0
    restarts: int = 0


@dataclass
class Supervisor:
    say: Callable[[str], None]
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    stable_after_s: float = 60.0
    """Running this long resets the pause to its initial length."""
    clock: Callable[[], float] = time.monotonic
    processes: list[Supervised] = field(default_factory=list)

    def watch(
        self,
        name: str,
        alive: Callable[[], bool],
        restart: Callable[[], None],
        exit_status: Callable[[], str] | None = None,
    ) -> Supervised:
        entry = Supervised(
            name,
            alive,
            restart,
            exit_status or (lambda: "exited"),
            backoff_s=self.initial_backoff_s,
            up_since=self.clock(),
        )
        self.processes.append(entry)
        return entry

    def tick(self) -> None:
        """Look at every process once: schedule a restart for the dead, restart those due."""
        now = self.clock()
        for entry in self.processes:
            if entry.next_try is None:
                if entry.alive():
                    if now - entry.up_since >= self.stable_after_s:
                        entry.backoff_s = self.initial_backoff_s
                    continue
                entry.next_try = now + entry.backoff_s
                self.say(
                    f"✗ {entry.name} stopped unexpectedly ({entry.exit_status()}); "
                    f"restarting in {entry.backoff_s:.1f}s"
                )
                continue
            if now < entry.next_try:
                continue
            try:
                entry.restart()
            except Exception as exc:
                entry.backoff_s = min(entry.backoff_s * 2, self.max_backoff_s)
                entry.next_try = now + entry.backoff_s
                self.say(
                    f"✗ {entry.name} did not start again ({exc}); "
                    f"next try in {entry.backoff_s:.1f}s"
                )
                continue
            entry.restarts += 1
            entry.next_try = None
            entry.up_since = now
            entry.backoff_s = min(entry.backoff_s * 2, self.max_backoff_s)
            self.say(f"↻ {entry.name} restarted (restart {entry.restarts})")
