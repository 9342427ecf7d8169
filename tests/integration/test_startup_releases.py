"""A start that fails half-way releases what it had opened (#16): each composition root
registers its pools, producers and tasks in an exit stack as it opens them, so a failure after
the database pool opened (a key database unreachable, a missing key) leaves no connection
behind."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest

from branchline_audit.adapters.signing_key import SigningKeyError
from branchline_audit.bootstrap import create_app as create_audit_app
from branchline_audit.bootstrap import run_consumer
from branchline_followup.bootstrap import followup_runtime
from branchline_intake.bootstrap import create_app as create_intake_app
from branchline_shared.embedded.ports import free_port
from branchline_shared.settings import BranchlineSettings, MissingSecretError
from tests.support.stack import Infra, eventually, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]


async def connections_to(infra: Infra, database_url: str) -> int:
    name = database_url.rsplit("/", 1)[1].split("?", 1)[0]
    conn = await asyncpg.connect(infra.postgres_admin_url)
    try:
        return int(
            await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE datname = $1", name)
        )
    finally:
        await conn.close()


async def no_connections_left(infra: Infra, database_url: str) -> None:
    async def none_left() -> bool:
        return await connections_to(infra, database_url) == 0

    await eventually(none_left, within=15)


async def start_intake_api(settings: BranchlineSettings) -> None:
    app = create_intake_app(settings)
    async with app.router.lifespan_context(app):
        pytest.fail("the intake API started without its key database")


async def start_followup(settings: BranchlineSettings) -> None:
    async with followup_runtime(settings):
        pytest.fail("followup started without its master key")


async def start_audit_api(settings: BranchlineSettings) -> None:
    app = create_audit_app(settings)
    async with app.router.lifespan_context(app):
        pytest.fail("the audit API started without its signing key")


async def start_audit_consumer(settings: BranchlineSettings) -> None:
    await run_consumer(settings)
    pytest.fail("the audit consumer started without its signing key")


def keys_database_unreachable(settings: BranchlineSettings) -> BranchlineSettings:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    return settings.model_copy(update={"keys_database_url": url})


def without_secret(name: str) -> Callable[[BranchlineSettings], BranchlineSettings]:
    def remove(settings: BranchlineSettings) -> BranchlineSettings:
        (settings.secrets_dir / name).unlink()
        return settings

    return remove


CASES = {
    # Each fails after its service's pool opened (and intake's relay producer started).
    "intake-api": (start_intake_api, keys_database_unreachable, OSError, "intake"),
    "followup": (start_followup, without_secret("master-key"), MissingSecretError, "followup"),
    "audit-api": (start_audit_api, without_secret("audit-signing-key"), SigningKeyError, "audit"),
    "audit-consumer": (
        start_audit_consumer,
        without_secret("audit-signing-key"),
        SigningKeyError,
        "audit",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_a_start_failing_after_the_pool_opened_closes_the_pool(
    infra: Infra, tmp_path: Path, case: str
) -> None:
    start, break_it, error, service = CASES[case]
    settings = break_it(make_settings(infra, tmp_path))
    database_url: str = getattr(settings, f"{service}_database_url")
    starting: Awaitable[None] = start(settings)
    with pytest.raises(error):
        await starting
    await no_connections_left(infra, database_url)
