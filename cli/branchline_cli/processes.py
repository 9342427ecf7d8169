"""Several processes serving one HTTP port (intake on a multi-core machine).

The parent binds the port once, forks ``processes`` children that each build their own app
(own pools, own group commit, own relay task: the relay's advisory lock keeps exactly one of
them publishing) and serve the shared socket; the kernel spreads connections between them.
The parent forwards SIGTERM/SIGINT to the children (each drains and stops gracefully) and
waits for them; if one child dies, the
others are stopped and the parent exits non-zero, so whoever supervises the component (the
dev stack, a container runtime) sees it fail and restarts it whole.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Callable

import uvicorn

_PR_SET_PDEATHSIG = 1


def resolved_processes(configured: int) -> int:
    """0 means one per core."""
    return configured if configured > 0 else max(1, os.cpu_count() or 1)


def serve_forked(
    make_server: Callable[[], uvicorn.Server], host: str, port: int, processes: int
) -> int:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(2048)
    listener.set_inheritable(True)
    children: list[int] = []
    for _ in range(processes):
        pid = os.fork()
        if pid == 0:  # the child: serve until told to stop
            code = 1
            try:
                _die_with_parent()
                server = make_server()  # each child its own app, pools and relay task
                server.run(sockets=[listener])
                code = 0 if server.started else 3
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children.append(pid)
    listener.close()
    return _wait(children)


def _wait(children: list[int]) -> int:
    stopping = False

    def forward(signum: int, _: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = 0
    alive = set(children)
    while alive:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid not in alive:
            continue
        alive.discard(pid)
        exit_code = os.waitstatus_to_exitcode(status)
        # uvicorn re-raises the stop signal once it has shut down gracefully.
        clean = exit_code == 0 or (stopping and -exit_code in (signal.SIGTERM, signal.SIGINT))
        if not clean and code == 0:
            code = 1
            forward(signal.SIGTERM, None)  # one failed: stop the others, fail as a whole
    return code


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass
