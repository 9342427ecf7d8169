"""``branchline audit verify | verify-export | prune`` as an operator or auditor runs them."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from branchline_audit.adapters import segments as segments_module
from branchline_audit.adapters.ledger import LedgerFilters
from branchline_audit.adapters.segments import ProcessSegmentVerifiers
from branchline_audit.application.checkpointing import checkpoint_now
from branchline_audit.application.context import TrailReader
from branchline_audit.application.exporting import export_lines
from branchline_audit.domain.note import Signer
from branchline_cli.main import app
from branchline_shared.settings import BranchlineSettings
from tests.integration.audit.audit_support import (
    T0,
    audit_context,
    behind_the_ledgers_back,
    event,
    lifecycle_event,
    quick_settings,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

runner = CliRunner()


@pytest.fixture
def cli_settings(
    cli_settings: BranchlineSettings, monkeypatch: pytest.MonkeyPatch
) -> BranchlineSettings:
    """The audit tests' ``cli_settings`` (conftest.py) with C-HELD listed for
    ``audit holds import-settings``, under the setting's former variable name."""
    s = quick_settings(cli_settings, retention_legal_hold_clients=["C-HELD"])
    monkeypatch.setenv("BRANCHLINE_AUDIT_LEGAL_HOLD_CLIENTS", '["C-HELD"]')
    return s


async def _build(settings: BranchlineSettings) -> None:
    async with audit_context(settings) as audit:
        old = T0 - timedelta(days=365 * 11)
        closed = "client.account_closed"
        await audit.ledger.append(
            [
                event(1, client_id="C-1"),
                lifecycle_event(40, closed, client_id="C-1", at=old),
                event(2, client_id="C-HELD"),
                lifecycle_event(41, closed, client_id="C-HELD", at=old),
            ],
            now=old,
        )
        await audit.ledger.append([event(n, client_id="C-2") for n in range(3, 40)], now=T0)
        await checkpoint_now(audit)


async def _export(settings: BranchlineSettings, path: Path, content: str) -> None:
    async with audit_context(settings) as audit:
        with path.open("w", encoding="utf-8", newline="") as handle:
            async for chunk in export_lines(
                audit,
                LedgerFilters(),
                content,
                TrailReader("auditor-1", frozenset({"auditor"})),  # type: ignore[arg-type]
            ):
                handle.write(chunk)


def test_verify_with_progress_then_a_tampered_entry_is_reported(
    cli_settings: BranchlineSettings,
) -> None:
    asyncio.run(_build(cli_settings))
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ok"] is True
    asyncio.run(
        behind_the_ledgers_back(
            cli_settings, "UPDATE audit_ledger SET hash = sha256(hash) WHERE position = 12"
        )
    )
    result = runner.invoke(app, ["audit", "verify", "--no-progress"])
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert report["first_bad_position"] == 12


def test_verify_in_processes_reports_what_one_pass_reports(
    cli_settings: BranchlineSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """#12: ``--processes 3`` (every ledger split: the size floor set to 1) gives the one
    pass's report, good or with an entry changed at the second segment's first position."""
    monkeypatch.setenv("BRANCHLINE_AUDIT_VERIFY_PARALLEL_MIN_ENTRIES", "1")
    asyncio.run(_build(cli_settings))
    one_pass = runner.invoke(app, ["audit", "verify", "--no-progress", "--processes", "1"])
    in_three = runner.invoke(app, ["audit", "verify", "--no-progress", "--processes", "3"])
    assert in_three.exit_code == one_pass.exit_code == 0, in_three.output
    assert json.loads(in_three.stdout) == json.loads(one_pass.stdout)
    asyncio.run(  # 41 entries: segments 1..13, 14..27, 28..
        behind_the_ledgers_back(
            cli_settings, "UPDATE audit_ledger SET hash = sha256(hash) WHERE position = 14"
        )
    )
    one_pass = runner.invoke(app, ["audit", "verify", "--no-progress", "--processes", "1"])
    in_three = runner.invoke(app, ["audit", "verify", "--no-progress", "--processes", "3"])
    assert in_three.exit_code == one_pass.exit_code == 1
    assert json.loads(in_three.stdout) == json.loads(one_pass.stdout)
    assert json.loads(in_three.stdout)["first_bad_position"] == 14


def _spied_segments(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many segments each verify handed to processes (nothing when it ran in one pass);
    the machine taken for one of three cores, so that the automatic choice splits."""
    asked: list[int] = []
    original = ProcessSegmentVerifiers.verify

    async def verify(self: ProcessSegmentVerifiers, segments: Any, sizes: Any) -> Any:
        asked.append(len(segments))
        return await original(self, segments, sizes)

    monkeypatch.setattr(ProcessSegmentVerifiers, "verify", verify)
    monkeypatch.setattr(segments_module, "default_processes", lambda: 3)
    return asked


@pytest.mark.parametrize("tampered", [False, True])
def test_verify_chooses_processes_by_the_ledgers_size_unless_told_and_reports_the_same(
    cli_settings: BranchlineSettings, monkeypatch: pytest.MonkeyPatch, tampered: bool
) -> None:
    """#12: by default (``BRANCHLINE_AUDIT_VERIFY_PROCESSES`` unset: automatic) a ledger below
    ``BRANCHLINE_AUDIT_VERIFY_PARALLEL_MIN_ENTRIES`` is verified in one pass and one of that
    size in one process per core; ``1`` forces one pass and ``3`` three processes whatever the
    size. Every report is the one pass's, good or with an entry changed at a boundary."""
    monkeypatch.delenv("BRANCHLINE_AUDIT_VERIFY_PROCESSES", raising=False)
    asked = _spied_segments(monkeypatch)
    asyncio.run(_build(cli_settings))
    if tampered:
        asyncio.run(  # 41 entries: segments 1..13, 14..27, 28..
            behind_the_ledgers_back(
                cli_settings, "UPDATE audit_ledger SET hash = sha256(hash) WHERE position = 14"
            )
        )
    reports = {}
    for name, processes, min_entries in [
        ("small, automatic", None, "42"),
        ("of the size, automatic", None, "41"),
        ("forced one pass", "1", "1"),
        ("forced three", "3", "1000000"),
    ]:
        if processes is None:
            monkeypatch.delenv("BRANCHLINE_AUDIT_VERIFY_PROCESSES", raising=False)
        else:
            monkeypatch.setenv("BRANCHLINE_AUDIT_VERIFY_PROCESSES", processes)
        monkeypatch.setenv("BRANCHLINE_AUDIT_VERIFY_PARALLEL_MIN_ENTRIES", min_entries)
        result = runner.invoke(app, ["audit", "verify", "--no-progress"])
        assert result.exit_code == (1 if tampered else 0), result.output
        reports[name] = json.loads(result.stdout)
    assert asked == [2, 2]  # the automatic choice at 41 entries, then the three forced
    assert all(report == reports["forced one pass"] for report in reports.values())
    assert reports["forced one pass"]["first_bad_position"] == (14 if tampered else None)


@pytest.mark.parametrize("content", ["jsonl", "csv"])
def test_verify_export_offline_and_a_changed_byte_names_its_line(
    cli_settings: BranchlineSettings, tmp_path: Path, content: str
) -> None:
    asyncio.run(_build(cli_settings))
    export = tmp_path / f"audit.{content}"
    asyncio.run(_export(cli_settings, export, content))
    key = runner.invoke(app, ["audit", "public-key"]).stdout.strip()
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps({"verifier_key": key}))

    for given in (key, str(key_file)):
        result = runner.invoke(app, ["audit", "verify-export", str(export), "--public-key", given])
        assert result.exit_code == 0, result.output
        assert "OK: 41 entries (complete export)" in result.stdout

    lines = export.read_bytes().split(b"\n")
    target = 7  # a line of the file, 1-based
    line = bytearray(lines[target - 1])
    line[len(line) // 2] ^= 0x01
    lines[target - 1] = bytes(line)
    export.write_bytes(b"\n".join(lines))
    result = runner.invoke(app, ["audit", "verify-export", str(export), "--public-key", key])
    assert result.exit_code == 1
    assert f"line {target}:" in result.stderr


def test_prune_refuses_a_held_client_and_prunes_the_rest(
    cli_settings: BranchlineSettings,
) -> None:
    asyncio.run(_build(cli_settings))
    # the former settings list becomes recorded holds (the migration aid), then rules alone
    imported = runner.invoke(app, ["audit", "holds", "import-settings", "--actor", "ops-1"])
    assert imported.exit_code == 0, imported.output
    assert json.loads(imported.stdout) == {"recorded": ["C-HELD"]}
    again = runner.invoke(app, ["audit", "holds", "import-settings"])
    assert json.loads(again.stdout) == {"recorded": []}
    refused = runner.invoke(app, ["audit", "prune", "--client", "C-HELD"])
    assert refused.exit_code == 2
    assert "D-11" in refused.stderr
    assert "legal hold" in refused.stderr

    result = runner.invoke(app, ["audit", "prune", "--actor", "ops-1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["pruned"] == 2  # C-1's records: its relationship ended 11 years ago
    assert report["positions"] == [[1, 2]]
    assert report["held_clients_skipped"] == ["C-HELD"]

    listed = json.loads(runner.invoke(app, ["audit", "holds", "list"]).stdout)
    assert [(h["hold_id"], h["placed_by"]) for h in listed] == [("settings-C-HELD", "ops-1")]
    lifted = runner.invoke(
        app, ["audit", "holds", "lift", "settings-C-HELD", "--reason", "matter_closed"]
    )
    assert lifted.exit_code == 0, lifted.output
    twice = runner.invoke(
        app, ["audit", "holds", "lift", "settings-C-HELD", "--reason", "matter_closed"]
    )
    assert twice.exit_code == 2
    assert "D-11" in twice.stderr
    result = runner.invoke(app, ["audit", "prune", "--actor", "ops-1"])
    assert json.loads(result.stdout)["positions"] == [[3, 4]]
    verified = runner.invoke(app, ["audit", "verify", "--no-progress"])
    assert verified.exit_code == 0, verified.output


def test_verify_without_the_logs_key_refuses_or_says_what_it_did_not_check(
    cli_settings: BranchlineSettings, tmp_path: Path
) -> None:
    """#12, Round 32: where the log's signing key is not (an auditor's machine), verify once
    said ``"ok": true`` with no checkpoint's signature checked. Now it refuses (exit 2)
    naming what to pass; ``--public-key`` checks the signatures with the auditor's key (a
    key not the log's fails them); ``--chain-only`` checks the rest and says what it did not."""
    asyncio.run(_build(cli_settings))
    key = runner.invoke(app, ["audit", "public-key"]).stdout.strip()
    signing_key = cli_settings.audit_signing_key_path
    signing_key.rename(tmp_path / "away.key")  # the auditor's machine: no signing key

    refused = runner.invoke(app, ["audit", "verify", "--no-progress"])
    assert refused.exit_code == 2, refused.output
    assert "D-11" in refused.stderr
    assert "--public-key" in refused.stderr
    assert refused.stdout == ""

    with_key = runner.invoke(app, ["audit", "verify", "--no-progress", "--public-key", key])
    assert with_key.exit_code == 0, with_key.output
    report = json.loads(with_key.stdout)
    assert report["ok"] is True
    assert report["signatures_checked"] is True
    assert report["checkpoints_checked"] >= 1
    assert "not_checked" not in report

    other = Signer.generate(cli_settings.audit_log_origin).verifier_key_string()
    wrong = runner.invoke(app, ["audit", "verify", "--no-progress", "--public-key", other])
    assert wrong.exit_code == 1, wrong.output
    assert "not signed" in json.loads(wrong.stdout)["reason"]

    chain = runner.invoke(app, ["audit", "verify", "--no-progress", "--chain-only"])
    assert chain.exit_code == 0, chain.output
    report = json.loads(chain.stdout)
    assert report["ok"] is True
    assert report["entries"] == 41
    assert report["signatures_checked"] is False
    assert "signatures" in report["not_checked"]
    assert "not checked" in chain.stderr
    # the chain is still checked without a key
    asyncio.run(
        behind_the_ledgers_back(
            cli_settings, "UPDATE audit_ledger SET hash = sha256(hash) WHERE position = 12"
        )
    )
    broken = runner.invoke(app, ["audit", "verify", "--no-progress", "--chain-only"])
    assert broken.exit_code == 1, broken.output
    assert json.loads(broken.stdout)["first_bad_position"] == 12


def test_verify_where_the_key_is_reports_the_signatures_checked(
    cli_settings: BranchlineSettings,
) -> None:
    asyncio.run(_build(cli_settings))
    result = runner.invoke(app, ["audit", "verify", "--no-progress"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["signatures_checked"] is True
    assert report["checkpoints_checked"] >= 1
