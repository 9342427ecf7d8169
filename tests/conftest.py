"""Session fixtures: a real PostgreSQL and a real Kafka-protocol broker, started once.

By default both are embedded (the same parts ``branchline dev`` runs); point the suite at
others with ``BRANCHLINE_TEST_DATABASE_URL`` (e.g. postgresql://postgres@127.0.0.1:5432/test)
and ``BRANCHLINE_TEST_KAFKA`` (host:port).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from branchline_shared.embedded.postgres import EmbeddedPostgres, prepare_runtime_dir
from branchline_shared.embedded.tansu import TansuBroker
from branchline_shared.http.auth import Role, utcnow
from branchline_shared.http.token_keys import SERVICES, service_audience, token_codec
from branchline_shared.settings import BranchlineSettings
from tests.support import hang_report, open_sockets, schedule
from tests.support.stack import Infra, env_override, make_settings, runtime_dir
from tests.support.templates import TemplateDatabases, fresh_requested, run

prepare_runtime_dir(runtime_dir())

# Speed is measured in bench/, never asserted by a test: on a loaded CI machine hypothesis's
# per-example deadline and its "too slow" health check fail correct code.
settings.register_profile("branchline", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("branchline")

open_sockets.install()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[object]:
    """A test that is about to time out first prints where its coroutines wait."""
    marker = item.get_closest_marker("timeout")
    timeout_s = (
        float(marker.args[0])
        if marker and marker.args
        else float(item.config.getini("timeout") or 0)
    )
    timer = hang_report.arm(item.nodeid, timeout_s)
    open_sockets.current_test(item.nodeid)
    try:
        return (yield)
    finally:
        open_sockets.current_test("<between tests>")
        if timer is not None:
            timer.cancel()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[object]:
    """When a module's tests and fixtures are done, none of its sockets may be left open: an
    open one would otherwise fail the whole run at its very end, naming nobody."""
    result = yield
    if nextitem is None or nextitem.path != item.path:
        ours = {i.nodeid for i in item.session.items if i.path == item.path}
        left = open_sockets.left_open(ours)
        if left:
            pytest.fail("sockets left open by this module's tests:\n" + "\n".join(left))
    return result


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In an xdist worker, the longest units first (tests/support/schedule.py, #12); the
    scheduler hands units out in this order. A serial run keeps pytest's own order."""
    if hasattr(config, "workerinput"):
        items[:] = [items[i] for i in schedule.slowest_first([item.nodeid for item in items])]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """``--dist loadfile`` (as `make test` runs it) hands out whole units, a module or a shared
    package (:func:`tests.support.schedule.unit_of`), in the workers' collection order, not
    xdist's largest-count-first (#12). Any other ``--dist`` is xdist's own."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class Units(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return schedule.unit_of(nodeid)

    config.option.loadscopereorder = False
    return Units(config, log)


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
        # Removed when the interpreter exits, not here: this runs inside the last test's
        # teardown, under its timeout, and deleting the server's tens of thousands of files
        # took over a minute on a loaded machine (an ERROR at teardown of a passed test).
        atexit.register(shutil.rmtree, data, ignore_errors=True)


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
def infra(postgres_admin_url: str, kafka_bootstrap: str) -> Iterator[Infra]:
    if fresh_requested(os.environ.get("BRANCHLINE_TEST_FRESH_DATABASES")):
        yield Infra(postgres_admin_url, kafka_bootstrap)
        return
    # Tests' service databases are copies of migrated templates (tests/support/templates.py).
    from branchline_audit.adapters import database as audit_database
    from branchline_shared.postgres import migrations

    templates = TemplateDatabases(postgres_admin_url)
    run(templates.create)
    try:
        with pytest.MonkeyPatch.context() as patch:
            for module in (migrations, audit_database):
                patch.setattr(
                    module, "ensure_database", templates.ensure_database(module.ensure_database)
                )
            yield Infra(postgres_admin_url, kafka_bootstrap)
    finally:
        # Only on an external server: DROP DATABASE forces a checkpoint (8-10 s at the end of
        # a run), and the embedded server's data directory is removed whole.
        if env_override("BRANCHLINE_TEST_DATABASE_URL"):
            run(templates.drop)


@pytest.fixture
def settings(infra: Infra, tmp_path: Path) -> BranchlineSettings:
    return make_settings(infra, tmp_path)


@pytest.fixture
def tokens(settings: BranchlineSettings) -> TokenFactory:
    return TokenFactory(settings)


TEST_BRANCH = "BR-001"
"""The branch of a branch-system token unless a test names another (the examples' branch)."""


class TokenFactory:
    """Tokens of the suite's deployment, for every service (``aud`` names all three). A
    branch-system token speaks for :data:`TEST_BRANCH` unless ``branch`` says otherwise."""

    def __init__(self, settings: BranchlineSettings) -> None:
        self.settings = settings
        self.codec = token_codec(settings, "intake")
        self.audiences = [service_audience(settings, s) for s in SERVICES]

    def token(
        self,
        *roles: Role,
        sub: str = "tester",
        branch: str | None = None,
        ttl: timedelta = timedelta(hours=1),
    ) -> str:
        if branch is None and Role.BRANCH_SYSTEM in roles:
            branch = TEST_BRANCH
        return self.codec.issue(
            sub, list(roles), ttl=ttl, now=utcnow(), branch_id=branch, audiences=self.audiences
        )

    def headers(
        self, *roles: Role, sub: str = "tester", branch: str | None = None
    ) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(*roles, sub=sub, branch=branch)}"}
