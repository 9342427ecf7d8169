"""The embedded PostgreSQL's start options: extra settings reach the server, and there are
none unless asked (the benchmark asks for track_commit_timestamp, bench/stack.py) (#12)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from branchline_shared.embedded import postgres
from branchline_shared.embedded.postgres import EmbeddedPostgres

pytestmark = pytest.mark.unit


class _Commands:
    def __init__(self) -> None:
        self.pg_ctl_args: list[str] = []

    def pg_ctl(self, args: list[str], **_kwargs: Any) -> None:
        self.pg_ctl_args = args


def _start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: EmbeddedPostgres) -> str:
    commands = _Commands()
    monkeypatch.setattr(EmbeddedPostgres, "_commands", lambda self: (commands, None))
    monkeypatch.setattr(EmbeddedPostgres, "_as_root", lambda self: False)
    monkeypatch.setattr(postgres, "port_is_free", lambda port, host: True)
    server.pgdata.mkdir(parents=True)
    (server.pgdata / "PG_VERSION").write_text("18")
    server.start()
    return commands.pg_ctl_args[commands.pg_ctl_args.index("-o") + 1]


def test_extra_settings_reach_the_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = EmbeddedPostgres(tmp_path / "pg", 5999)
    server.extra_settings["track_commit_timestamp"] = "on"
    options = _start(tmp_path, monkeypatch, server)
    assert options.endswith(" -c track_commit_timestamp=on")
    assert "-c shared_buffers=" in options


def test_the_product_adds_no_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    options = _start(tmp_path, monkeypatch, EmbeddedPostgres(tmp_path / "pg", 5999))
    assert "track_commit_timestamp" not in options
