"""Fixtures shared by the audit integration tests."""

from __future__ import annotations

import random

import pytest

from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import (
    VERIFY_ENTRIES,
    filled_ledger,
    quick_settings,
    random_events,
)
from tests.support.stack import Infra


@pytest.fixture(scope="package")
async def verify_ledger(infra: Infra, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A ledger of :data:`VERIFY_ENTRIES` entries, appended once for the verify tests
    (test_audit_verify_api.py, _limit.py, _slot_guard.py: building it took ~2 s of each one's
    setup, #12). Each test serves its own copy (``copy_ledger``): what its verify records, or
    its altering, no other test sees."""
    events = random_events(VERIFY_ENTRIES, random.Random(7))
    return await filled_ledger(infra, tmp_path_factory.mktemp("verify-ledger"), events)


@pytest.fixture
def cli_settings(
    settings: BranchlineSettings, monkeypatch: pytest.MonkeyPatch
) -> BranchlineSettings:
    """The test's settings (no checkpoint falls due) and the environment ``branchline audit``
    reads them from when a test invokes the CLI in process (its audit database, its data
    directory): shared by test_audit_cli.py, _signed_reads.py and _unwritten_times.py."""
    s = quick_settings(settings)
    monkeypatch.setenv("BRANCHLINE_AUDIT_DATABASE_URL", s.audit_database_url)
    monkeypatch.setenv("BRANCHLINE_DATA_DIR", str(s.data_dir))
    return s
