"""Fixtures of the followup integration tests: the worker and the API on the real stack."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.followup.harness import ApiClients, followup_api, followup_db, running_worker
from tests.support.stack import Infra, make_settings


@pytest.fixture
def settings(infra: Infra, tmp_path: Path) -> BranchlineSettings:
    return make_settings(
        infra,
        tmp_path,
        staff_supervisors={"rm-7": "sup-1", "rm-8": "sup-1"},
        followup_timer_poll_interval_s=0.2,
    )


@pytest.fixture
async def db(settings: BranchlineSettings) -> AsyncIterator[asyncpg.Connection[Any]]:
    async with followup_db(settings) as conn:
        yield conn


@pytest.fixture
async def stack(settings: BranchlineSettings, tokens: TokenFactory) -> AsyncIterator[ApiClients]:
    async with running_worker(settings), followup_api(settings, tokens) as api:
        yield api
