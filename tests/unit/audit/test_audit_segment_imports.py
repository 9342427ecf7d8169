"""A verifying segment's process imports what its read and check need, not the event
catalogue, the settings (pydantic) or the ledger's adapter (#12, docs/performance.md): the
fork server imports :mod:`branchline_audit.adapters.segments` at each command's start, and
those cost about half a second of CPU there. The verdict is tested elsewhere
(test_audit_verify_choice.py, test_audit_segments.py, the CLI and tamper suites)."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor

import pytest

from branchline_audit.adapters import segments

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

NOT_IN_A_SEGMENT = (
    "branchline_shared.events.catalogue",
    "branchline_shared.settings",
    "pydantic",
    "pydantic_settings",
    "branchline_audit.adapters.ledger",
)

_LOADED = "sorted(__import__('sys').modules)"


def test_the_segments_module_imports_no_catalogue_settings_or_ledger_adapter() -> None:
    loaded = subprocess.run(
        [sys.executable, "-c", f"import branchline_audit.adapters.segments; print({_LOADED})"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    modules = set(eval(loaded))
    assert "branchline_audit.domain.verification" in modules
    assert "asyncpg" in modules
    assert not [m for m in modules if m.startswith(NOT_IN_A_SEGMENT)]


def test_a_verifying_process_started_by_the_fork_server_has_none_of_them() -> None:
    context = segments.verifying_context()
    context.set_forkserver_preload([segments.__name__])
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as executor:
        modules = set(executor.submit(eval, _LOADED).result(timeout=50))
    assert "branchline_audit.adapters.segments" in modules
    assert "branchline_audit.adapters.scan" in modules
    assert not [m for m in modules if m.startswith(NOT_IN_A_SEGMENT)]
