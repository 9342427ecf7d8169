"""A SIGTERM or SIGINT in a component process's first moments (still importing, before its
own signal handling is in place) stops it cleanly, exit 0, as a later one does (#12).

Before, the signal's default action ended it: -15 (143) for SIGTERM, a ``KeyboardInterrupt``
traceback and -2 for SIGINT. Now ``branchline run``'s first lines hold the stop signals
(``branchline_shared.stop_signals``) and the component's handling takes a held one as soon as
it is in place (the start is cut short). Two ways a process is started:

- by ``branchline dev`` (``devstack.Child``), which starts its children with the stop signals
  blocked until that hold: a signal sent the moment the process exists is kept as well;
- by anything else (a container runtime, systemd, a test): a signal sent once the process
  is importing its libraries (here: once it has mapped a C extension from site-packages,
  which every component imports long before its handlers, well after the hold).

Every component: the three APIs (intake's as two forked processes and its supervisor), the
followup worker, the audit consumer and the standalone intake relay."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from branchline_cli.components import Component, ComponentInfo
from branchline_cli.devstack import Child
from branchline_shared.embedded.ports import free_port
from tests.support.processes import settings_env
from tests.support.stack import Infra, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

COMPONENTS = [c.value for c in Component]
STARTS = 4
"""Starts per component through the dev stack's spawn, SIGTERM and SIGINT alternately."""
WAIT_S = 90.0
"""For the process to end once signalled (it imports first: seconds on a busy machine)."""


def _env(infra: Infra, tmp_path: Path) -> dict[str, str]:
    settings = make_settings(
        infra,
        tmp_path,
        intake_port=free_port(),
        followup_port=free_port(),
        audit_port=free_port(),
        followup_worker_port=free_port(),
        audit_consumer_port=free_port(),
        intake_relay_port=free_port(),
        intake_processes=2,  # intake's API: two forked processes and their supervisor
        reconcile_self_repair=False,
    )
    settings.resolved_master_key()  # made once here, not raced for by the processes
    return settings_env(settings)


def _ended(process: subprocess.Popen[bytes]) -> int:
    try:
        return process.wait(WAIT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("component", COMPONENTS)
def test_a_stop_signal_the_moment_dev_starts_a_component_stops_it_cleanly(
    infra: Infra, tmp_path: Path, component: str
) -> None:
    env = _env(infra, tmp_path)
    info = ComponentInfo(Component(component), "intake_port", component, public=False)
    for start in range(STARTS):
        sig = signal.SIGTERM if start % 2 == 0 else signal.SIGINT
        child = Child(info, 0, tmp_path / f"{component}-{start}.log")
        child.start(env)
        assert child.process is not None
        child.process.send_signal(sig)  # the process exists: its interpreter is starting
        code = _ended(child.process)
        child.wait(timeout=1)  # closes the log
        output = child.log_tail(40)
        assert code == 0, f"start {start}, {sig.name}: exit {code}\n{output}"
        assert "Traceback" not in output, output


def _importing(process: subprocess.Popen[bytes]) -> bool:
    """Whether the process has mapped a C extension from site-packages (or has ended)."""
    while process.poll() is None:
        try:
            maps = Path(f"/proc/{process.pid}/maps").read_text()
        except (FileNotFoundError, ProcessLookupError):
            break
        if any("site-packages" in line and ".so" in line for line in maps.splitlines()):
            return True
        time.sleep(0.001)
    return False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("component", COMPONENTS)
def test_a_stop_signal_while_a_component_imports_stops_it_cleanly(
    infra: Infra, tmp_path: Path, component: str, sig: signal.Signals
) -> None:
    log_path = tmp_path / f"{component}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "branchline_cli.main", "run", component],
            env=_env(infra, tmp_path),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    importing = _importing(process)
    process.send_signal(sig)
    code = _ended(process)
    output = log_path.read_text(errors="replace")
    assert importing, output
    assert code == 0, f"{sig.name}: exit {code}\n{output}"
    assert "Traceback" not in output, output


_SUPERVISED = """
import os, signal, sys, time
from branchline_cli.fork_supervisor import become_supervisor
signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGTERM, signal.SIGINT))  # as serve_forked
pid = os.fork()
if pid == 0:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGTERM, signal.SIGINT))
    time.sleep(60)
    os._exit(3)
os.kill(os.getpid(), signal.SIGTERM)  # to intake's parent between its forks and the exec
sys.exit(become_supervisor([pid]))
"""


def test_a_stop_signal_to_intakes_parent_before_its_supervisor_runs_is_forwarded() -> None:
    """The signal waits, blocked, through the ``exec`` of the fork supervisor, which forwards
    it once its handlers are in place; the child stops and the component exits 0 (it died by
    the signal, -15, and took its children with it)."""
    process = subprocess.run(
        [sys.executable, "-c", _SUPERVISED], capture_output=True, timeout=30, check=False
    )
    assert process.returncode == 0, process.stderr.decode(errors="replace")
