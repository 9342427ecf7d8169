"""Several processes serving one HTTP port (intake on a multi-core machine).

The parent binds the port once, forks ``processes`` children that each build their own app
(own pools, own group commit, own relay task: the relay's advisory lock keeps exactly one of
them publishing) and serve the shared socket; the kernel spreads connections between them.
The parent then replaces itself with ``fork_supervisor`` (a few MB instead of the whole
application it imported, #12), which forwards SIGTERM/SIGINT to the children (each drains and
stops gracefully) and waits for them; if one child dies, the others are stopped and the parent
exits non-zero, so whoever supervises the component (the dev stack, a container runtime) sees
it fail and restarts it whole.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import sys
from collections.abc import Callable

import uvicorn

from branchline_cli.fork_supervisor import become_supervisor

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
    return become_supervisor(children)


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass
