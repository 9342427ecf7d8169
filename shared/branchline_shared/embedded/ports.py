"""Loopback ports for the embedded stack, the tests and the benchmarks.

A port found by binding port 0 and closing it is free only at that instant: the server meant
to listen on it binds it later, and in between another process choosing a port the same way
(another xdist worker with its own PostgreSQL, broker and services; another checkout's suite)
or any outgoing connection (the kernel takes their local ports from the same range) could
take it. So :func:`free_port` (#12):

- chooses outside the kernel's ephemeral range (``ip_local_port_range``), where the kernel
  never puts an outgoing connection or a port-0 bind;
- reserves the port for the life of the calling process, with a lock on the port's byte in one
  per-user lock file that every process choosing ports here respects, so no other such
  process chooses it until this one exits (a crashed process's locks go with it);
- checks, while holding the reservation, that nothing listens on it already.

The process that reserved a port (or a child it starts) then binds it whenever it likes, and
may stop and start its server on it again. ``port_is_free`` stays a plain bind check: a
reservation does not stop its own process from binding.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

LOCK_DIR_ENV = "BRANCHLINE_PORT_LOCK_DIR"
"""Where the lock file lives, if set; otherwise a per-user folder under the temporary folder.
Every process that must not share ports with another has to see the same one."""

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
FALLBACK_EPHEMERAL = (32768, 65535)
"""Without /proc (not Linux), avoid both Linux's default range (32768-60999) and IANA's
(49152-65535) that BSD and macOS use."""

LOWEST = 10_000
"""Below this are the ports local services are usually configured on (5432, 6379, 8080, 9092 ...):
one that is stopped now may start later and find its port taken by a test."""

FEWEST = 1_000


class NoFreePort(RuntimeError):
    pass


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(part) for part in EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return FALLBACK_EPHEMERAL
    return low, high


def candidate_ports() -> list[int]:
    """Ports outside the ephemeral range: from ``LOWEST`` if that leaves enough of them, else
    from 1024; if the range covers everything, any unprivileged port (the reservation still
    keeps cooperating processes apart, not outgoing connections)."""
    low, high = ephemeral_range()
    for lowest in (LOWEST, 1024):
        ports = [p for p in range(lowest, 65536) if not low <= p <= high]
        if len(ports) >= FEWEST:
            return ports
    return list(range(1024, 65536))


def default_lock_path() -> Path:
    configured = os.environ.get(LOCK_DIR_ENV)
    folder = (
        Path(configured)
        if configured
        else Path(tempfile.gettempdir()) / f"branchline-ports-{os.getuid()}"
    )
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    return folder / "ports.lock"


class PortReservations:
    """The ports this process holds in one lock file. Record locks are per process (a second
    lock by the same process on the same byte succeeds), hence the in-process set; they are
    not inherited by a forked child, which therefore cannot choose its parent's ports either."""

    def __init__(self, lock_path: Path, ports: Sequence[int] | None = None) -> None:
        self.lock_path = lock_path
        self._ports = ports
        self._held: set[int] = set()
        self._guard = threading.Lock()
        self._fd: int | None = None

    @property
    def held(self) -> frozenset[int]:
        return frozenset(self._held)

    def _lock_file(self) -> int:
        if self._fd is None:
            # Never closed while the process lives: closing any descriptor of the file drops
            # every record lock the process holds on it.
            self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        return self._fd

    def _try_lock(self, fd: int, port: int) -> bool:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, port, os.SEEK_SET)
        except OSError:
            return False
        return True

    def choose(self, host: str = "127.0.0.1") -> int:
        ports = list(self._ports) if self._ports is not None else candidate_ports()
        start = random.randrange(len(ports))
        with self._guard:
            fd = self._lock_file()
            for index in range(len(ports)):
                port = ports[(start + index) % len(ports)]
                if port in self._held or not self._try_lock(fd, port):
                    continue
                if port_is_free(port, host):
                    self._held.add(port)
                    return port
                # Someone outside this scheme listens there: nothing to keep it from.
                fcntl.lockf(fd, fcntl.LOCK_UN, 1, port, os.SEEK_SET)
        raise NoFreePort(
            f"no free port on {host} among {len(ports)} outside the ephemeral range "
            f"(reservations in {self.lock_path})"
        )


_default: PortReservations | None = None
_default_guard = threading.Lock()


def _reservations() -> PortReservations:
    global _default  # one lock file descriptor and one set of held ports per process
    with _default_guard:
        if _default is None:
            _default = PortReservations(default_lock_path())
        return _default


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on, outside the ephemeral range, that no other process choosing
    ports here will be given while this process lives."""
    return _reservations().choose(host)


def wait_for_port(port: int, host: str = "127.0.0.1", timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False
