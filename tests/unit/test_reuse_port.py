"""The intake API's processes with a socket each (``intake_reuse_port``, #12): the kernel
spreads the connections between them whatever their timing, a taken port fails as with the
shared socket, and a stop is clean. Real processes and sockets, servers that need no app."""

from __future__ import annotations

import contextlib
import errno
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from branchline_shared.embedded.ports import free_port

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

CONNECTIONS = 64

# Each child answers every connection it accepts with its pid. The first child to start is
# the slow one: it accepts nothing until the test creates the file ``go``.
_PARENT = textwrap.dedent(
    """
    import os, select, signal, sys, time
    from branchline_cli.processes import serve_forked

    mode, port, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3]

    class Server:
        started = True

        def run(self, sockets):
            (listener,) = sockets
            # Non-blocking: on the shared socket both children wake for one connection and the
            # loser's blocking accept() would outlive SIGTERM (its handler returns, the call is
            # retried), leaving the group unstopped.
            listener.setblocking(False)
            stop = []
            signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
            try:
                os.close(os.open(f"{folder}/slow", os.O_CREAT | os.O_EXCL))
                slow = True
            except FileExistsError:
                slow = False
            with open(f"{folder}/ready-{os.getpid()}", "w"):
                pass
            while not stop:
                if slow and not os.path.exists(f"{folder}/go"):
                    time.sleep(0.02)
                    continue
                if select.select([listener], [], [], 0.05)[0]:
                    try:
                        conn, _ = listener.accept()
                    except BlockingIOError:
                        continue  # the other child took it
                    conn.setblocking(True)
                    conn.sendall(str(os.getpid()).encode())
                    conn.close()

    raise SystemExit(serve_forked(Server, "127.0.0.1", port, 2, reuse_port=mode == "reuse"))
    """
)


@contextlib.contextmanager
def _group(mode: str, port: int, folder: Path) -> Iterator[subprocess.Popen[bytes]]:
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, mode, str(port), str(folder)], stderr=subprocess.PIPE
    )
    try:
        yield parent
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=10)
        if parent.stderr is not None:
            parent.stderr.close()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def _supervising(pid: int) -> bool:
    """Whether the parent has become the supervisor (it forwards SIGTERM from then on)."""
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    status = Path(f"/proc/{pid}/status").read_text()
    caught = next(x for x in status.splitlines() if x.startswith("SigCgt:"))
    return b"branchline_cli.fork_supervisor" in cmdline and bool(
        int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1
    )


def _wait_for(condition: Callable[[], bool], within_s: float = 30) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _answers(clients: list[socket.socket], within_s: float) -> dict[int, int]:
    """The pid each client was answered with within ``within_s`` (by index); the others are
    left waiting."""
    answered: dict[int, int] = {}
    deadline = time.monotonic() + within_s
    for index, client in enumerate(clients):
        client.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = client.recv(32)
        except TimeoutError:
            continue
        answered[index] = int(data)
    return answered


def _served(mode: str, tmp_path: Path) -> tuple[dict[int, int], dict[int, int], int]:
    """64 connections while the slow child accepts nothing, then after it starts: the
    answers before, the answers after, and the slow child's pid."""
    port = free_port()
    with _group(mode, port, tmp_path) as parent:
        _wait_for(lambda: len(list(tmp_path.glob("ready-*"))) == 2)
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(CONNECTIONS)]
        try:
            # Both children are running; only the fast one accepts for now.
            before = _answers(clients, within_s=3)
            (tmp_path / "go").touch()
            waiting = [c for i, c in enumerate(clients) if i not in before]
            after = _answers(waiting, within_s=10)
        finally:
            for client in clients:
                client.close()
        slow = next(
            int(p.name.removeprefix("ready-"))
            for p in tmp_path.glob("ready-*")
            if int(p.name.removeprefix("ready-")) in _children(parent.pid)
            and int(p.name.removeprefix("ready-")) not in before.values()
        )
        _wait_for(lambda: _supervising(parent.pid))
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=20) == 0
    return before, after, slow


def test_a_socket_each_spreads_connections_whatever_the_processes_timing(
    tmp_path: Path,
) -> None:
    before, after, slow = _served("reuse", tmp_path)
    # The kernel hashed every connection to one child's socket: the fast child answered
    # only its own, the slow one's waited for it (no other process may take them).
    assert len(before) + len(after) == CONNECTIONS
    assert len(set(before.values())) == 1
    assert set(after.values()) == {slow}
    # About half each (binomial: fewer than 16 of 64 is a 4-sigma event).
    assert len(before) >= 16
    assert len(after) >= 16


def test_the_shared_socket_gives_everything_to_whoever_accepts(tmp_path: Path) -> None:
    # The contrast: with one shared socket the fast child takes every connection.
    before, after, slow = _served("shared", tmp_path)
    assert len(before) == CONNECTIONS
    assert slow not in before.values()
    assert after == {}


@pytest.mark.parametrize("mode", ["reuse", "shared"])
def test_a_stop_is_clean_and_frees_the_port(mode: str, tmp_path: Path) -> None:
    port = free_port()
    with _group(mode, port, tmp_path) as parent:
        _wait_for(lambda: len(list(tmp_path.glob("ready-*"))) == 2)
        children = _children(parent.pid)
        assert len(children) == 2
        (tmp_path / "go").touch()
        with socket.create_connection(("127.0.0.1", port)) as client:
            assert int(client.recv(32)) in children
        _wait_for(lambda: _supervising(parent.pid))
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=20) == 0
        _wait_for(lambda: not [c for c in children if _alive(c)], within_s=10)
    # Nothing listens there any more: a plain bind succeeds.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
        again.listen()


@pytest.mark.parametrize("holder_reuses_port", [False, True])
@pytest.mark.parametrize("mode", ["reuse", "shared"])
def test_a_taken_port_fails_before_any_process_starts(
    mode: str, holder_reuses_port: bool, tmp_path: Path
) -> None:
    # Even a listener that itself has SO_REUSEPORT (another intake of the same user) is not
    # joined silently.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        if holder_reuses_port:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with _group(mode, port, tmp_path) as parent:
            assert parent.wait(timeout=30) != 0
            assert parent.stderr is not None
            err = parent.stderr.read().decode()
        assert f"[Errno {errno.EADDRINUSE}]" in err
        assert not list(tmp_path.glob("ready-*"))
