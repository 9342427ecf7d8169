"""schemathesis against the three OpenAPI documents (issue #9): whatever a generated request
holds, no operation of intake, followup or audit answers with a server error.

Bounded for CI (``BRANCHLINE_SCHEMATHESIS_EXAMPLES``, default 8 examples per operation); a
longer profile: ``BRANCHLINE_SCHEMATHESIS_EXAMPLES=200 .venv/bin/pytest
tests/integration/test_openapi_fuzz.py``."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error

from branchline_audit.bootstrap import create_app as audit_app
from branchline_followup.bootstrap import create_app as followup_app
from branchline_intake.bootstrap import create_app as intake_app
from branchline_shared.embedded.ports import free_port
from branchline_shared.http.auth import Role
from branchline_shared.http.bounded_headers import bounded_http_protocol
from tests.conftest import TokenFactory
from tests.support.stack import Infra, make_settings

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

EXAMPLES = int(os.environ.get("BRANCHLINE_SCHEMATHESIS_EXAMPLES", "8"))
FUZZ = hypothesis_settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@dataclass
class Service:
    url: str
    headers: dict[str, str]


class _ThreadServer(uvicorn.Server):
    """A real server on its own thread and event loop (schemathesis' calls are synchronous)."""


def _start(app: Any) -> tuple[_ThreadServer, threading.Thread, str]:
    port = free_port()
    server = _ThreadServer(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            http=bounded_http_protocol(32_768),
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def services(
    infra: Infra, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Service]]:
    settings = make_settings(
        infra,
        tmp_path_factory.mktemp("openapi"),
        audit_checkpoint_every_entries=10**9,
        audit_checkpoint_interval_s=3600.0,
        dev_mode=True,
    )
    tokens = TokenFactory(settings)
    started = []
    found: dict[str, Service] = {}
    try:
        for name, factory, role in (
            ("intake", intake_app, Role.ADMIN),
            ("followup", followup_app, Role.ADMIN),
            ("audit", audit_app, Role.AUDITOR),
        ):
            server, thread, url = _start(factory(settings))
            started.append((server, thread))
            found[name] = Service(url, tokens.headers(role, sub=f"{role.value}-fuzz"))
        yield found
    finally:
        for server, _ in started:
            server.should_exit = True
        for _, thread in started:
            thread.join(timeout=30)


def _a_readiness_answer(path: str, response: Any) -> bool:
    """``/readyz``'s 503 is its answer, not a failure: a dependency not reachable at that
    moment (the broker's metadata request timing out on a loaded machine, seen once in CI) or
    the process draining, in the documented body (an orchestrator's readiness probe reads the
    status). Any other 5xx there, or a 503 without that body, is still a server error."""
    if path != "/readyz" or response.status_code != 503:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    return (
        isinstance(body, dict)
        and body.get("status") in ("not_ready", "draining")
        and isinstance(body.get("checks"), dict)
    )


def _fuzz(service: Service) -> list[str]:
    """Every operation of the service's OpenAPI document, ``EXAMPLES`` generated requests
    each, checked with ``not_a_server_error``; the failures, described."""
    schema = schemathesis.openapi.from_url(service.url + "/openapi.json")
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(operation.as_strategy())
        @FUZZ
        def one(case: Any) -> None:
            response = case.call(base_url=service.url, headers=service.headers)
            if _a_readiness_answer(case.path, response):
                return
            case.validate_response(response, checks=[not_a_server_error])

        try:
            one()
        except Exception as failure:
            failures.append(f"{operation.label}: {failure}"[:2000])
    assert operations > 3, "the OpenAPI document lists the service's operations"
    return failures


@pytest.mark.parametrize("name", ["intake", "followup", "audit"])
def test_no_operation_answers_a_server_error(services: dict[str, Service], name: str) -> None:
    failures = _fuzz(services[name])
    assert failures == [], "\n\n".join(failures)
