"""The environment a test gives a Branchline process it starts itself (a real subprocess, so
signals and exit codes are the ones production sees)."""

from __future__ import annotations

import os

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
