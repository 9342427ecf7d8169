"""Several processes serving one HTTP port (intake on a multi-core machine).

The parent binds the port, forks ``processes`` children that each build their own app
(own pools, own group commit, own relay task: the relay's advisory lock keeps exactly one of
them publishing) and serve it. How they share the port (``intake_reuse_port``):

- one shared listening socket (the default): every child accepts from it, and whichever wakes
  first takes what is waiting, so a burst of new connections can land mostly on one child;
- a socket per child bound with ``SO_REUSEPORT``: the kernel hashes each new connection to one
  of them, so connections are spread evenly whatever the children's timing. The parent first
  binds the port without ``SO_REUSEPORT`` (and lets it go), so a port already taken fails
  exactly as in the shared mode, even by another group of ``SO_REUSEPORT`` sockets of the
  same user (which would otherwise be joined silently). Each child closes the others'
  sockets: connections hashed to a socket are only ever accepted by its own child.

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
from branchline_shared.stop_signals import STOP_SIGNALS

_PR_SET_PDEATHSIG = 1


def resolved_processes(configured: int) -> int:
    """0 means one per core."""
    return configured if configured > 0 else max(1, os.cpu_count() or 1)


def serve_forked(
    make_server: Callable[[], uvicorn.Server],
    host: str,
    port: int,
    processes: int,
    *,
    reuse_port: bool = False,
) -> int:
    listeners = (
        _reuse_port_listeners(host, port, processes) if reuse_port else [_listener(host, port)]
    )
    children: list[int] = []
    # From here to the supervisor's handlers a stop signal waits, blocked (pending through the
    # fork supervisor's ``exec``), then is forwarded; a child lets it through at once: one held
    # before the fork (``stop_signals``) it keeps, and its server's handling takes it (#12).
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    for index in range(processes):
        pid = os.fork()
        if pid == 0:  # the child: serve until told to stop
            code = 1
            try:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
                _die_with_parent()
                own = listeners[index % len(listeners)]
                for other in listeners:
                    if other is not own:
                        other.close()
                server = make_server()  # each child its own app, pools and relay task
                server.run(sockets=[own])
                # a start cut short by SIGTERM is a stop, not a failed start (#12)
                code = 0 if server.started or getattr(server, "cut_short", False) else 3
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children.append(pid)
    for listener in listeners:
        listener.close()
    return become_supervisor(children)


def _listener(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        listener.bind((host, port))
        listener.listen(2048)
        listener.set_inheritable(True)
    except BaseException:
        listener.close()
        raise
    return listener


def _reuse_port_listeners(host: str, port: int, processes: int) -> list[socket.socket]:
    """``processes`` listening sockets on one port, each with ``SO_REUSEPORT``. The port is
    taken first without it: if anything holds it (even ``SO_REUSEPORT`` sockets of this
    user), this fails as the shared socket's bind does; port 0 is resolved here once."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
        port = probe.getsockname()[1]
    listeners: list[socket.socket] = []
    try:
        for _ in range(processes):
            listeners.append(_listener(host, port, reuse_port=True))
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    return listeners


def _die_with_parent() -> None:
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass
