"""The start-up heap is frozen once a process has started (#12): the helper freezes what is
left after collecting the start-up's garbage, and each entrypoint calls it once started - the
workers after their parts started, the API servers once the lifespan started and they listen.
The entrypoints' parts are replaced by stand-ins; the order of what they record is the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

import branchline_audit.bootstrap as audit_bootstrap
import branchline_cli.components as components
import branchline_followup.bootstrap as followup_bootstrap
import branchline_intake.bootstrap as intake_bootstrap
from branchline_shared.embedded.ports import free_port
from branchline_shared.http.graceful import DrainingServer
from branchline_shared.http.startup_heap import (
    BATCH_YOUNG_THRESHOLD,
    SERVING_YOUNG_THRESHOLD,
    freeze_batch_heap,
    freeze_serving_heap,
    freeze_startup_heap,
)
from branchline_shared.settings import AuditSettings, FollowupSettings

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """The test process's heap is left as it was: unfrozen before and after."""
    gc.unfreeze()
    yield
    gc.unfreeze()


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.mark.usefixtures("unfrozen")
def test_the_helper_freezes_the_heap_after_collecting_the_start_ups_garbage() -> None:
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle: only the collector frees it
    gone = weakref.ref(a)
    del a, b
    assert gc.get_freeze_count() == 0

    freeze_startup_heap()

    assert gc.get_freeze_count() > 0
    assert gone() is None  # collected, not frozen for the life of the process


@pytest.mark.usefixtures("unfrozen")
def test_a_serving_intake_collects_its_young_objects_less_often() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        freeze_serving_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (SERVING_YOUNG_THRESHOLD, 10, 10)  # the older ones kept
    finally:
        gc.set_threshold(*before)


@pytest.mark.usefixtures("unfrozen")
def test_the_followup_worker_collects_its_young_objects_less_often() -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        freeze_batch_heap()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (BATCH_YOUNG_THRESHOLD, 10, 10)  # the older ones kept
        assert BATCH_YOUNG_THRESHOLD > 700
        freeze_batch_heap(3_000)  # the worker's setting
        assert gc.get_threshold() == (3_000, 10, 10)
    finally:
        gc.set_threshold(*before)


@pytest.mark.parametrize("young", [699, 0, 1_000_001])
def test_the_followup_workers_threshold_setting_is_bounded(young: int) -> None:
    # 0 would switch the collector off; below CPython's 700 it would run more than by default
    with pytest.raises(ValidationError, match="followup_worker_gc_young_threshold"):
        FollowupSettings.model_validate(
            {"jwt_secret": "x" * 40, "followup_worker_gc_young_threshold": young}
        )


def test_the_followup_workers_threshold_defaults_to_the_batch_threshold() -> None:
    default = FollowupSettings.model_validate({"jwt_secret": "x" * 40})
    assert default.followup_worker_gc_young_threshold == BATCH_YOUNG_THRESHOLD


@pytest.mark.parametrize("young", [699, 0, 1_000_001])
def test_the_audit_consumers_threshold_setting_is_bounded(young: int) -> None:
    with pytest.raises(ValidationError, match="audit_consumer_gc_young_threshold"):
        AuditSettings.model_validate(
            {"jwt_secret": "x" * 40, "audit_consumer_gc_young_threshold": young}
        )


def test_the_audit_consumers_threshold_defaults_to_the_batch_threshold() -> None:
    default = AuditSettings.model_validate({"jwt_secret": "x" * 40})
    assert default.audit_consumer_gc_young_threshold == BATCH_YOUNG_THRESHOLD


# -- the entrypoints' stand-ins ------------------------------------------------------------


def recorder(
    monkeypatch: pytest.MonkeyPatch,
    module: Any,
    steps: list[str],
    freeze: str = "freeze_startup_heap",
) -> None:
    stop = asyncio.Event()

    def frozen(*young: int) -> None:
        steps.append(f"frozen{list(young)}")
        stop.set()  # stopped as soon as started (a stop while starting cuts the start short)

    monkeypatch.setattr(module, freeze, frozen)

    def stop_on_signals() -> asyncio.Event:
        return stop

    @contextlib.asynccontextmanager
    async def serving_health(*_: Any) -> AsyncIterator[Any]:
        steps.append("health serving")

        async def drain(_: float) -> None:
            steps.append("draining")

        yield SimpleNamespace(drain=drain)

    monkeypatch.setattr(module, "stop_on_signals", stop_on_signals)
    monkeypatch.setattr(module, "serving_health", serving_health)


async def nothing(*_: Any, **__: Any) -> None:
    return None


async def forever(*_: Any, **__: Any) -> None:
    await asyncio.Event().wait()


def settings() -> Any:
    return SimpleNamespace(
        bind_host="127.0.0.1",
        followup_worker_port=0,
        audit_consumer_port=0,
        intake_relay_port=0,
        shutdown_drain_s=0,
        shutdown_flush_timeout_s=1,
        kafka_producer_stop_flush_s=1,
        kafka_bootstrap="127.0.0.1:1",
        intake_database_url="postgresql://nowhere/intake",
        dead_letter_gauge_interval_s=60,
        audit_db_writer_role="writer",
        followup_worker_gc_young_threshold=1234,
        audit_consumer_gc_young_threshold=4321,
        audit_consumer_stop_timeout_s=5,
    )


async def test_the_followup_worker_freezes_once_its_parts_have_started(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps: list[str] = []
    recorder(monkeypatch, followup_bootstrap, steps, "freeze_batch_heap")

    @contextlib.asynccontextmanager
    async def running_worker_parts(_: Any) -> AsyncIterator[Any]:
        steps.append("worker started")
        consuming = asyncio.create_task(forever())
        yield SimpleNamespace(runtime=SimpleNamespace(pool=None), consuming=consuming)
        consuming.cancel()
        steps.append("worker stopped")

    monkeypatch.setattr(followup_bootstrap, "running_worker_parts", running_worker_parts)

    await followup_bootstrap.run_worker(settings())

    # its young-generation threshold is the setting's (#12)
    assert steps == [
        "health serving",
        "worker started",
        "frozen[1234]",
        "draining",
        "worker stopped",
    ]


async def test_the_intake_relay_freezes_once_relaying_and_serving_health(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps: list[str] = []
    recorder(monkeypatch, intake_bootstrap, steps)

    async def open_pool(*_: Any, **__: Any) -> Any:
        return SimpleNamespace(close=nothing)

    async def started_producer(*_: Any) -> Any:
        return object()

    async def run() -> None:
        await asyncio.Event().wait()

    async def drain(task: asyncio.Task[None], *, timeout_s: float) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    monkeypatch.setattr(intake_bootstrap, "declare_topics", lambda _: SimpleNamespace(all=list))
    monkeypatch.setattr(intake_bootstrap, "ensure_topics", nothing)
    monkeypatch.setattr(intake_bootstrap, "open_pool", open_pool)
    monkeypatch.setattr(intake_bootstrap, "started_producer", started_producer)
    monkeypatch.setattr(
        intake_bootstrap,
        "outbox_relay",
        # drain_given_up: what RelayStop reads after the drain (a relay that saw no failure)
        lambda *_: SimpleNamespace(run=run, drain=drain, drain_given_up=False),
    )

    await intake_bootstrap.run_relay(settings())

    assert steps == ["health serving", "frozen[]", "draining"]


async def test_the_audit_consumer_freezes_once_consuming_and_serving_health(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    steps: list[str] = []
    recorder(monkeypatch, audit_bootstrap, steps, "freeze_batch_heap")
    stopped = asyncio.Event()

    class Consumer:
        async def run(self) -> None:
            await stopped.wait()

        def request_stop(self) -> None:
            stopped.set()

    async def open_role_pool(*_: Any, **__: Any) -> Any:
        return SimpleNamespace(close=nothing)

    @contextlib.asynccontextmanager
    async def started(*_: Any) -> AsyncIterator[None]:
        yield

    monkeypatch.setattr(audit_bootstrap, "prepare_database", nothing)
    monkeypatch.setattr(
        audit_bootstrap,
        "declare_topics",
        lambda _: SimpleNamespace(all=list, audit_consumer_dlq=SimpleNamespace(name="dlq")),
    )
    monkeypatch.setattr(audit_bootstrap, "ensure_topics", nothing)
    monkeypatch.setattr(audit_bootstrap, "open_role_pool", open_role_pool)
    monkeypatch.setattr(
        audit_bootstrap,
        "make_producer",
        lambda *_, **__: SimpleNamespace(start=nothing, stop=nothing),
    )
    monkeypatch.setattr(audit_bootstrap, "audit_context", lambda *_: SimpleNamespace(ledger=None))
    monkeypatch.setattr(audit_bootstrap, "self_repair", lambda *_: None)
    monkeypatch.setattr(audit_bootstrap, "build_consumer", lambda *_, **__: Consumer())
    monkeypatch.setattr(audit_bootstrap, "watch_dead_letters", forever)
    monkeypatch.setattr(audit_bootstrap, "checkpointing", started)
    monkeypatch.setattr(audit_bootstrap, "self_repairing", started)

    await audit_bootstrap.run_consumer(settings())

    # its young-generation threshold is the setting's (#12)
    assert steps == ["health serving", "frozen[4321]", "draining"]


# -- the API servers -----------------------------------------------------------------------


async def test_a_draining_server_calls_on_started_once_its_app_started_and_it_listens() -> None:
    steps: list[str] = []

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        steps.append("lifespan started")
        yield
        steps.append("lifespan ended")

    app = FastAPI(lifespan=lifespan)
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_config=None)
    server: DrainingServer

    def on_started() -> None:
        steps.append(f"started, listening: {bool(server.servers)}")
        server.should_exit = True

    server = DrainingServer(config, app_state=app.state, drain_s=0, on_started=on_started)
    await asyncio.wait_for(server.serve(), timeout=10)

    assert steps == ["lifespan started", "started, listening: True", "lifespan ended"]


def test_the_api_components_freeze_their_start_up_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    settings: Any = SimpleNamespace(
        bind_host="127.0.0.1",
        max_header_bytes=8192,
        shutdown_drain_s=0,
        shutdown_requests_timeout_s=10,
    )
    served: dict[str, Any] = {}
    monkeypatch.setattr(components, "serve_draining", lambda *_, **kw: served.update(kw))
    app = FastAPI()

    components._serve(app, 0, settings)
    assert served["on_started"] is freeze_startup_heap
    components._serve(app, 0, settings, freeze_serving_heap)  # as intake's API
    assert served["on_started"] is freeze_serving_heap
    forked = components._draining_server(app, 0, settings)  # an intake child
    assert forked._on_started is freeze_serving_heap


def test_intake_api_serves_with_the_serving_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    settings: Any = SimpleNamespace(intake_processes=1, intake_port=0, log_level="INFO")
    served: list[Any] = []
    monkeypatch.setattr(components, "configure_logging", lambda *_: None)
    monkeypatch.setattr(intake_bootstrap, "create_app", lambda _: FastAPI())
    monkeypatch.setattr(components, "_serve", lambda *args: served.append(args))

    components.run_component(components.Component.INTAKE_API, settings)

    assert served[0][-1] is freeze_serving_heap
