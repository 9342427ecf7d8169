"""Session fixtures: a real PostgreSQL and a real Kafka-protocol broker, started once.

By default both are embedded (the same parts ``branchline dev`` runs); point the suite at
others with ``BRANCHLINE_TEST_DATABASE_URL`` (e.g. postgresql://postgres@127.0.0.1:5432/test)
and ``BRANCHLINE_TEST_KAFKA`` (host:port).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from branchline_shared.embedded.postgres import EmbeddedPostgres, prepare_runtime_dir
from branchline_shared.embedded.tansu import TansuBroker
from branchline_shared.http.auth import Role, TokenCodec, utcnow
from branchline_shared.settings import BranchlineSettings
from tests.support.stack import Infra, env_override, make_settings, runtime_dir

prepare_runtime_dir(runtime_dir())


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    configured = env_override("BRANCHLINE_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    from branchline_shared.embedded.ports import free_port

    data = Path(tempfile.mkdtemp(prefix="pg-", dir=runtime_dir()))
    server = EmbeddedPostgres(data, free_port())
    server.start()
    try:
        yield server.url("postgres")
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    configured = env_override("BRANCHLINE_TEST_KAFKA")
    if configured:
        yield configured
        return
    from branchline_shared.embedded.ports import free_port

    broker = TansuBroker(free_port(), runtime_dir() / f"tansu-{os.getpid()}.log")
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture(scope="session")
def infra(postgres_admin_url: str, kafka_bootstrap: str) -> Infra:
    return Infra(postgres_admin_url, kafka_bootstrap)


@pytest.fixture
def settings(infra: Infra, tmp_path: Path) -> BranchlineSettings:
    return make_settings(infra, tmp_path)


@pytest.fixture
def tokens(settings: BranchlineSettings) -> TokenFactory:
    return TokenFactory(settings)


class TokenFactory:
    def __init__(self, settings: BranchlineSettings) -> None:
        self.codec = TokenCodec(
            settings.resolved_jwt_secret(), settings.jwt_issuer, settings.jwt_audience
        )

    def headers(self, *roles: Role, sub: str = "tester") -> dict[str, str]:
        from datetime import timedelta

        token = self.codec.issue(sub, list(roles), ttl=timedelta(hours=1), now=utcnow())
        return {"Authorization": f"Bearer {token}"}
