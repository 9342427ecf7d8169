"""The tamper tests' fixtures: every test run three ways (``verify_path``); the module's
shared ledger (built once per module, put back after each test) or a fresh one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import audit_context, quick_settings
from tests.integration.audit.tamper.tamper_support import (
    VERIFY_PATH,
    Built,
    build,
    keep_pristine,
    restore_pristine,
)
from tests.support.stack import Infra, make_settings


@pytest.fixture(autouse=True, params=["one pass", "segments", "apart"])
def verify_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every test runs three times: verified in one pass; in three segments each in a
    process of its own, joined at their boundaries (#12); and as the API verifies, every
    segment in a process, none in the caller's event loop (#12): the verdicts must be the
    same."""
    VERIFY_PATH["path"] = request.param
    yield request.param
    VERIFY_PATH["path"] = "one pass"


@pytest.fixture(scope="module")
async def built_1000(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Built]:
    settings = quick_settings(make_settings(infra, tmp_path_factory.mktemp("tamper")))
    await build(settings)
    await keep_pristine(settings)
    async with audit_context(settings) as audit:
        yield settings, audit


@pytest.fixture
async def ledger_1000(built_1000: Built) -> AsyncIterator[Built]:
    """The module's shared ledger, put back as built after each test: a test that fails or
    times out mid-tamper, before its own ``finally`` ran (pytest-timeout's signal can land
    outside the test's coroutine, which then never resumes), cannot leave it tampered for the
    next ones."""
    try:
        yield built_1000
    finally:
        await restore_pristine(built_1000[0])


@pytest.fixture
async def fresh_ledger(settings: BranchlineSettings) -> AsyncIterator[Built]:
    s = quick_settings(settings)
    await build(s)
    async with audit_context(s) as audit:
        yield s, audit
