"""The intake API's parent after forking (#12): it becomes a small supervisor, and still
stops its processes together and fails as a whole."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

# serve_forked in a process of its own (it execs), with servers that need no app: each
# serves until SIGTERM, or fails at once where told to.
_PARENT = textwrap.dedent(
    """
    import signal, sys, time
    import branchline_cli.main  # what `branchline run intake-api` has imported by then
    from branchline_cli.processes import serve_forked

    class Server:
        started = True

        def run(self, sockets):
            if sys.argv[1] == "fail":
                raise SystemExit(1)
            stop = []
            signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
            while not stop:
                time.sleep(0.05)

    raise SystemExit(serve_forked(Server, "127.0.0.1", 0, 2))
    """
)


def _start(mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", _PARENT, mode])


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _supervising(pid: int, within_s: float = 30) -> str:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        status = Path(f"/proc/{pid}/status").read_text()
        if "branchline_cli.fork_supervisor" in cmdline and _catches_sigterm(status):
            return status
        time.sleep(0.05)
    raise AssertionError("the parent did not become the supervisor of its two processes")


def _catches_sigterm(status: str) -> bool:
    caught = next(x for x in status.splitlines() if x.startswith("SigCgt:"))
    return bool(int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1)


def _rss_mb(status: str) -> float:
    line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def test_the_parent_keeps_none_of_the_application_and_stops_its_processes() -> None:
    parent = _start("serve")
    try:
        status = _supervising(parent.pid)
        children = _children(parent.pid)
        assert len(children) == 2
        # The parent had imported the whole command line (about 90 MB resident); the
        # supervisor it becomes holds the interpreter alone.
        assert _rss_mb(status) < 30
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=20) == 0
        assert not [c for c in children if Path(f"/proc/{c}").exists()]
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)


def test_one_failed_process_fails_the_whole_group() -> None:
    parent = _start("fail")
    try:
        assert parent.wait(timeout=30) == 1
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)


def test_the_processes_still_die_with_the_supervisor() -> None:
    # Their parent-death signal was set before the exec: it must still fire when the
    # supervisor (the same process) is killed outright.
    parent = _start("serve")
    try:
        _supervising(parent.pid)
        children = _children(parent.pid)
        assert len(children) == 2
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 20
        while [c for c in children if _alive(c)] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [c for c in children if _alive(c)]
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)


def _alive(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status")
    try:
        return "zombie" not in status.read_text()
    except OSError:
        return False
