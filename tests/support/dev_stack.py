"""`branchline dev` started as a user starts it, on free ports and a fresh data folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from branchline_shared.embedded.ports import free_port

COMPONENTS = (
    "intake",
    "followup",
    "audit",
    "followup_worker",
    "audit_consumer",
    "broker",
    "postgres",
)


@dataclass
class DevStack:
    process: subprocess.Popen[str]
    env: dict[str, str]
    ports: dict[str, int]
    output: Path
    minted: dict[tuple[str, str, str | None], str] = field(default_factory=dict)
    """The tokens made so far, by role, subject and branch: each one made costs a Python
    process (the CLI's imports, ~1.5 s on a loaded 2-core machine), and the browser tests
    ask for the same few again and again (#12)."""

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def token(self, role: str, sub: str, branch: str | None = None) -> str:
        """A token of the stack's dev key, made by `branchline token` as a user makes it, once
        per role, subject and branch (it lives for the longest lifetime allowed, hours)."""
        key = (role, sub, branch)
        if key not in self.minted:
            self.minted[key] = self._mint(role, sub, branch)
        return self.minted[key]

    def _mint(self, role: str, sub: str, branch: str | None) -> str:
        extra = ["--branch", branch] if branch else []
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "branchline_cli.main",
                "token",
                "--role",
                role,
                "--sub",
                sub,
                *extra,
            ],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        return result.stdout.strip()


@contextmanager
def running_dev_stack(data: Path, extra_env: dict[str, str] | None = None) -> Iterator[DevStack]:
    ports = {name: free_port() for name in COMPONENTS}
    env = dict(os.environ)
    env.update({f"BRANCHLINE_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    env["BRANCHLINE_DATA_DIR"] = str(data)
    env.update(extra_env or {})
    env.pop("BRANCHLINE_JWT_SECRET", None)
    output = data.parent / "dev.out"
    with output.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "branchline_cli.main", "dev"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    stack = DevStack(process, env, ports, output)
    try:
        deadline = time.monotonic() + 120
        while "Branchline is up." not in output.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"branchline dev did not come up:\n{output.read_text()}")
            time.sleep(0.3)
        yield stack
    finally:
        if process.poll() is None:
            process.send_signal(2)  # SIGINT: the stack stops in order
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
