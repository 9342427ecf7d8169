"""SIGTERM to a running intake process: readiness turns unready first, every request in
flight is answered, the relay publishes what was committed, the process exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import asyncpg
import httpx
import pytest
from pydantic import SecretStr

from branchline_shared.embedded.ports import free_port
from branchline_shared.http.auth import Role
from branchline_shared.kafka.topics import declare_topics
from branchline_shared.settings import BranchlineSettings
from tests.conftest import TokenFactory
from tests.integration.test_reconcile import registration
from tests.support.kafka import read_all
from tests.support.stack import Infra, eventually, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def process_env(settings: BranchlineSettings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRANCHLINE_")}
    for name in (
        "data_dir",
        "intake_database_url",
        "keys_database_url",
        "kafka_bootstrap",
        "topic_namespace",
        "jwt_secret",
        "intake_port",
        "shutdown_drain_s",
    ):
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"BRANCHLINE_{name.upper()}"] = str(value)
    return env


async def test_sigterm_drains_requests_and_the_relay_then_exits_cleanly(
    infra: Infra, tmp_path: Path
) -> None:
    settings = make_settings(infra, tmp_path, intake_port=free_port(), shutdown_drain_s=1.5)
    settings.resolved_master_key()
    tokens = TokenFactory(settings)
    log = (tmp_path / "intake.log").open("wb")
    process = subprocess.Popen(  # noqa: ASYNC220 - a short start, then only signals
        [sys.executable, "-m", "branchline_cli.main", "run", "intake-api"],
        env=process_env(settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{settings.intake_port}"
    try:
        async with httpx.AsyncClient(
            base_url=url, headers=tokens.headers(Role.BRANCH_SYSTEM), timeout=30
        ) as client:

            async def ready() -> bool:
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.HTTPError:
                    return False

            await eventually(ready, within=60, interval=0.3)
            posts = [
                asyncio.create_task(client.post("/v1/events", json=registration(f"C-{n}")))
                for n in range(30)
            ]
            await asyncio.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            readiness = await client.get("/readyz")
            assert readiness.status_code == 503
            assert readiness.json()["status"] == "draining"
            # still served while draining
            late = await client.post("/v1/events", json=registration("C-late"))
            answers = await asyncio.gather(*posts)
        assert [a.status_code for a in answers] == [202] * 30
        assert late.status_code == 202
        # uvicorn re-raises the signal it handled once it has shut down cleanly
        assert await asyncio.to_thread(process.wait, 30) in (0, -signal.SIGTERM)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
        log.close()
    conn = await asyncpg.connect(settings.intake_database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM es_outbox WHERE published_at IS NULL") == 0
    finally:
        await conn.close()
    records = await read_all(
        settings.kafka_bootstrap, declare_topics(settings).intake_events.name, expect=31
    )
    assert len(records) == 31
