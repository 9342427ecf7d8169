"""The restart policy of ``branchline dev`` (and the chaos suite), with a fake clock."""

from __future__ import annotations

import pytest

from branchline_cli.supervision import Supervisor

pytestmark = pytest.mark.unit


class Process:
    def __init__(self) -> None:
        self.running = True
        self.starts = 0
        self.fail_next = 0

    def restart(self) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("port taken")
        self.starts += 1
        self.running = True


def test_a_dead_process_is_restarted_after_a_pause_that_doubles_and_resets_when_stable() -> None:
    now = [0.0]
    said: list[str] = []
    supervisor = Supervisor(
        said.append, initial_backoff_s=1, max_backoff_s=4, stable_after_s=60, clock=lambda: now[0]
    )
    process = Process()
    entry = supervisor.watch(
        "intake API", lambda: process.running, process.restart, lambda: "exit code -9"
    )

    supervisor.tick()
    assert said == []
    process.running = False
    supervisor.tick()
    assert said[-1] == "✗ intake API stopped unexpectedly (exit code -9); restarting in 1.0s"
    now[0] = 0.5
    supervisor.tick()
    assert process.starts == 0  # not yet
    now[0] = 1.0
    supervisor.tick()
    assert process.starts == 1
    assert said[-1] == "↻ intake API restarted (restart 1)"

    process.running = False  # crashes again at once: the pause doubles
    supervisor.tick()
    assert said[-1].endswith("restarting in 2.0s")
    now[0] = 3.0
    supervisor.tick()
    assert process.starts == 2

    now[0] = 100.0  # ran a while: the pause is back to its start
    supervisor.tick()
    assert entry.backoff_s == 1


def test_a_failed_restart_is_tried_again_later_never_beyond_the_longest_pause() -> None:
    now = [0.0]
    said: list[str] = []
    supervisor = Supervisor(said.append, initial_backoff_s=1, max_backoff_s=4, clock=lambda: now[0])
    process = Process()
    supervisor.watch("broker", lambda: process.running, process.restart)
    process.running = False
    process.fail_next = 3
    supervisor.tick()
    for step in range(1, 30):
        now[0] = float(step)
        supervisor.tick()
    assert process.starts == 1
    assert any("did not start again (port taken); next try in 4.0s" in s for s in said)
    assert not any("next try in 8.0s" in s for s in said)
