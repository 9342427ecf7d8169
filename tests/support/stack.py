"""Test helpers that start the real parts: PostgreSQL, the broker and the services' apps."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import uvicorn
from fastapi import FastAPI

from branchline_cli.dev_secrets import provision_dev_secrets
from branchline_shared.embedded.ports import free_port
from branchline_shared.http.bounded_headers import bounded_http_protocol
from branchline_shared.settings import BranchlineSettings

T = TypeVar("T")


def runtime_dir() -> Path:
    base = Path(tempfile.gettempdir()) / "branchline-tests"
    base.mkdir(exist_ok=True)
    return base


@dataclass(frozen=True)
class Infra:
    postgres_admin_url: str  # a URL whose path names an existing database
    kafka_bootstrap: str

    def database_url(self, name: str) -> str:
        parts = urlsplit(self.postgres_admin_url)
        return urlunsplit(parts._replace(path=f"/{name}"))


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:12]}"


def make_settings(infra: Infra, data_dir: Path, **overrides: Any) -> BranchlineSettings:
    """Settings for one test: its own databases, topics and consumer groups."""
    tag = unique("t")
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "intake_database_url": infra.database_url(f"{tag}_intake"),
        "followup_database_url": infra.database_url(f"{tag}_followup"),
        "keys_database_url": infra.database_url(f"{tag}_keys"),
        "audit_database_url": infra.database_url(f"{tag}_audit"),
        "kafka_bootstrap": infra.kafka_bootstrap,
        "topic_namespace": f"test-{tag}",
        "jwt_secret": "test-secret-" + "x" * 40,
        "relay_poll_interval_s": 0.1,
        "db_pool_max": 5,
        "dev_mode": True,  # the suite stands in for the embedded dev stack
        # The suite's stories are dated (November 2026, some days ahead): D-05b bounds
        # occurred_at by the time of receipt, so tests that are not about D-05b widen the
        # bounds; the D-05b tests set the defaults back.
        # (wide enough for the representable window, 1900..2199, that strict input tests)
        "intake_late_entry_window_hours": 24 * 366 * 200,
        "intake_clock_skew_seconds": 86_400 * 366 * 200,
    }
    values.update(overrides)
    settings = BranchlineSettings.model_validate(values)
    if settings.environment == "development":
        provision_dev_secrets(settings)  # the embedded stack's job; the suite stands in for it
    return settings


class _TestServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[str]:
    """Run ``app`` on a free loopback port (real HTTP, lifespan included); yields its URL."""
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        http=bounded_http_protocol(BranchlineSettings.model_fields["max_header_bytes"].default),
    )
    server = _TestServer(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("server stopped during start")
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=30)


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float = 20.0, interval: float = 0.1
) -> T:
    """Wait, bounded, for an asynchronous effect: ``probe`` returns a value when it is there."""
    deadline = asyncio.get_running_loop().time() + within
    last_error: BaseException | None = None
    while True:
        try:
            value = await probe()
            if value is not None and value is not False:
                return value
        except AssertionError as exc:
            last_error = exc
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {within}s (last error: {last_error!r})")
        await asyncio.sleep(interval)


def env_override(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None
