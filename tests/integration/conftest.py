"""Fixtures shared by the integration tests at this level (a package's own conftest, or a
module's own fixture of the same name, takes precedence)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI

from branchline_intake.bootstrap import create_app
from branchline_shared.settings import BranchlineSettings
from tests.support.stack import serve


@pytest.fixture
async def app(settings: BranchlineSettings) -> AsyncIterator[FastAPI]:
    """Intake's app, served on a free loopback port for the test (its lifespan run: pool,
    group commit, relay), for the tests that call its application layer beside HTTP."""
    application = create_app(settings)
    async with serve(application):
        yield application
