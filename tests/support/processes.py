"""The environment a test gives a Branchline process it starts itself (a real subprocess, so
signals and exit codes are the ones production sees)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Sequence

import httpx
from pydantic import SecretStr

from branchline_shared.settings import BranchlineSettings


def process_env(settings: BranchlineSettings, *names: str) -> dict[str, str]:
    """This process's environment without any ``BRANCHLINE_`` variable of the test runner's,
    and the named settings as ``BRANCHLINE_<NAME>`` (secrets in clear: the child needs them)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHLINE_")}
    for name in names:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"BRANCHLINE_{name.upper()}"] = str(value)
    return env


def settings_env(settings: BranchlineSettings) -> dict[str, str]:
    """``process_env`` with every setting the test chose (maps and lists as JSON)."""
    env = process_env(settings)
    for name in settings.model_fields_set:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"BRANCHLINE_{name.upper()}"] = (
            json.dumps(value) if isinstance(value, dict | list) else str(value)
        )
    return env


async def readiness(client: httpx.AsyncClient) -> tuple[int, str] | None:
    """A process's ``/readyz`` answer as (status code, status), or None while it cannot answer
    (starting, or gone)."""
    try:
        answer = await client.get("/readyz")
    except httpx.HTTPError:
        return None
    return answer.status_code, str(answer.json().get("status"))


def stopped_by(
    args: Sequence[str], sig: int, *, ready: bytes, before: Callable[[], None] | None = None
) -> tuple[int, str]:
    """Start ``args`` (stdout and stderr together), wait for its first line to be ``ready``,
    call ``before``, send ``sig``: its exit code and the rest of its output. The process
    never outlives the call (killed if it has not ended)."""
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == ready
        if before is not None:
            before()
        process.send_signal(sig)
        code = process.wait(timeout=30)
        return code, process.stdout.read().decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()
