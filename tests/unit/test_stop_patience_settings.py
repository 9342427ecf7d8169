"""The stop's patiences are settings (#12, Round 36): ``relay_stop_patience_s`` (an outbox
relay's drain with a round waiting on the database or the broker, 1 s) and
``consumer_stop_patience_s`` (the batch in hand of the followup worker and the audit consumer,
2 s), bounded, read from the environment, and passed by every service's bootstrap to what it
builds; before, both were the modules' constants and no setting reached them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from branchline_audit.bootstrap import build_consumer
from branchline_followup import bootstrap as followup_bootstrap
from branchline_followup.entrypoints.worker import create_worker_consumer
from branchline_intake import bootstrap as intake_bootstrap
from branchline_shared.clock import SystemClock
from branchline_shared.eventstore import relay
from branchline_shared.kafka import consuming
from branchline_shared.kafka.topics import declare_topics
from branchline_shared.settings import BranchlineSettings

PRODUCER: Any = object()  # built with, never used: nothing here sends
POOL: Any = object()


def settings_with(tmp_path: Path, **values: Any) -> BranchlineSettings:
    return BranchlineSettings(data_dir=tmp_path, **values)


def test_the_defaults_are_the_rounds_constants(tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    assert settings.relay_stop_patience_s == relay.STOP_PATIENCE_S == 1.0
    assert settings.consumer_stop_patience_s == consuming.STOP_PATIENCE_S == 2.0


def test_the_patiences_are_read_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BRANCHLINE_RELAY_STOP_PATIENCE_S", "3.5")
    monkeypatch.setenv("BRANCHLINE_CONSUMER_STOP_PATIENCE_S", "25")
    settings = settings_with(tmp_path)
    assert settings.relay_stop_patience_s == 3.5
    assert settings.consumer_stop_patience_s == 25.0


@pytest.mark.parametrize("name", ["relay_stop_patience_s", "consumer_stop_patience_s"])
@pytest.mark.parametrize("value", [0, 0.05, -1, 601])
def test_a_patience_out_of_its_bounds_is_refused_naming_it(
    tmp_path: Path, name: str, value: float
) -> None:
    with pytest.raises(ValidationError) as refused:
        settings_with(tmp_path, **{name: value})
    assert name in str(refused.value)


def test_the_audit_consumer_is_built_with_the_setting(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, consumer_stop_patience_s=7.5)
    consumer = build_consumer(settings, object(), PRODUCER, SystemClock(), answering=None)  # type: ignore[arg-type]
    assert consumer.stop_patience_s == 7.5


def test_the_followup_workers_consumer_is_built_with_the_setting(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, consumer_stop_patience_s=7.5)
    consumer = create_worker_consumer(
        settings,
        declare_topics(settings),
        None,  # type: ignore[arg-type]
        object(),  # type: ignore[arg-type]
        units=object(),  # type: ignore[arg-type]
    )
    assert consumer.stop_patience_s == 7.5


@pytest.mark.parametrize("service", [intake_bootstrap, followup_bootstrap])
def test_each_stores_outbox_relay_is_built_with_the_setting(tmp_path: Path, service: Any) -> None:
    settings = settings_with(tmp_path, relay_stop_patience_s=4.0)
    built = service.outbox_relay(settings, POOL, PRODUCER, declare_topics(settings))
    assert built.stop_patience_s == 4.0
