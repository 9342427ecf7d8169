"""The export format, verified offline from the written rules (no database)."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

import pytest

from branchline_audit.domain.canonical import GENESIS_PREV_HASH, entry_hash
from branchline_audit.domain.export import ExportVerdict, ExportWriter, bytes_lines, verify_export
from branchline_audit.domain.merkle import inclusion_proof, leaf_hash, root
from branchline_audit.domain.note import Signer, sign_checkpoint

pytestmark = pytest.mark.unit

ORIGIN = "branchline.dev/audit"
SIGNER = Signer.generate(ORIGIN)
APPENDED = "2026-11-22T09:00:00.000000Z"


def ledger(count: int) -> list[tuple[int, dict[str, Any], bytes, bytes]]:
    rows = []
    prev = GENESIS_PREV_HASH
    for position in range(1, count + 1):
        event = {"event_id": f"e{position}", "type": "visit.arrived", "data": {"n": position}}
        digest = entry_hash(prev, position, event, APPENDED)
        rows.append((position, event, prev, digest))
        prev = digest
    return rows


def single_byte_changes(data: bytes, step: int) -> Iterator[tuple[int, int | None, ExportVerdict]]:
    """Every ``step``-th byte of ``data`` changed in turn: its offset, the number of the line it
    is in (None for a newline, whose change merges two lines) and the verdict on the result."""
    starts = [0]
    for line in data.split(b"\n"):
        starts.append(starts[-1] + len(line) + 1)
    for offset in range(0, len(data), step):
        tampered = bytearray(data)
        tampered[offset] ^= 0x20 if data[offset] != ord("\n") else 0x01
        verdict = verify_export(bytes_lines(bytes(tampered)), SIGNER.verifier())
        newline = data[offset] == ord("\n")
        line = None if newline else bisect.bisect_right(starts, offset)
        yield offset, line, verdict


def export_body(
    content: str, only: set[int] | None, *, through: int = 40, mask: bool = True
) -> tuple[ExportWriter, list[str], bytes]:
    """The writer, the header and entry lines of positions 1..``through`` of a 40-entry ledger
    (``only`` those, each with its proof; every seventh masked if ``mask``), and the tree's
    root."""
    rows = ledger(40)
    leaves = [leaf_hash(r[3]) for r in rows]
    writer = ExportWriter(content)  # type: ignore[arg-type]
    out = [writer.header()]
    for position, event, prev, digest in rows[:through]:
        if only is not None and position not in only:
            continue
        masked = mask and position % 7 == 0
        out.append(
            writer.entry_line(
                position=position,
                appended_at=APPENDED,
                prev_hash=prev,
                hash=digest,
                event={"masked": True} if masked else event,
                view="masked" if masked else "full",
                proof=None if only is None else inclusion_proof(position - 1, 40, leaves),
            )
        )
    return writer, out, root(leaves)


def export(content: str, *, only: set[int] | None = None, signer: Signer = SIGNER) -> bytes:
    writer, out, tree_root = export_body(content, only)
    out.append(
        writer.manifest_line(
            signer,
            {
                "origin": ORIGIN,
                "filters": {} if only is None else {"client_id": "C-1"},
                "complete": only is None,
                "tree_size": 40,
                "root_hash": tree_root.hex(),
                "checkpoint": sign_checkpoint(signer, ORIGIN, 40, tree_root),
            },
        )
    )
    return "".join(out).encode()


@pytest.mark.parametrize("content", ["jsonl", "csv"])
@pytest.mark.parametrize("only", [None, {3, 7, 8, 21, 40}])
def test_a_good_export_verifies(content: str, only: set[int] | None) -> None:
    verdict = verify_export(bytes_lines(export(content, only=only)), SIGNER.verifier())
    assert verdict.ok, verdict
    assert verdict.entries == (40 if only is None else 5)


@pytest.mark.parametrize("content", ["jsonl", "csv"])
def test_every_single_byte_change_is_rejected_with_its_line(content: str) -> None:
    for offset, line, verdict in single_byte_changes(export(content, only={3, 7, 8, 21, 40}), 3):
        assert not verdict.ok, offset
        if line is not None:
            assert verdict.line == line, (offset, verdict)


def test_removed_lines_and_other_keys_are_rejected() -> None:
    lines = export("jsonl").split(b"\n")
    verdict = verify_export(bytes_lines(b"\n".join(lines[:5] + lines[6:])), SIGNER.verifier())
    assert not verdict.ok
    assert verdict.line == 6
    other = Signer.generate(ORIGIN)
    verdict = verify_export(bytes_lines(export("jsonl")), other.verifier())
    assert not verdict.ok
    assert verdict.line == 41
    assert "signature" in (verdict.reason or "")
    verdict = verify_export(bytes_lines(b"\n".join(lines[:-2]) + b"\n"), SIGNER.verifier())
    assert not verdict.ok  # the manifest cut off


def cut_export(
    content: str,
    *,
    after: int,
    only: set[int] | None = None,
    signer: Signer = SIGNER,
    signed_checkpoint: bool = True,
) -> bytes:
    """An export the server stopped after position ``after``: its entries, then the signed
    incomplete trailer in place of the manifest (#12)."""
    writer, out, tree_root = export_body(content, only, through=after, mask=False)
    tree: dict[str, Any] = {
        "tree_size": 40,
        "root_hash": tree_root.hex(),
        "checkpoint": sign_checkpoint(signer, ORIGIN, 40, tree_root),
    }
    out.append(
        writer.incomplete_line(
            signer,
            {
                "origin": ORIGIN,
                "filters": {} if only is None else {"client_id": "C-1"},
                "complete": only is None,
                "reason": "the ledger entry at position 9 was altered behind the ledger's back",
                "rule": "D-11",
                **(tree if signed_checkpoint else {}),
            },
        )
    )
    return "".join(out).encode()


@pytest.mark.parametrize("content", ["jsonl", "csv"])
@pytest.mark.parametrize("only", [None, {3, 7, 8, 21, 40}])
def test_an_export_the_server_could_not_finish_is_reported_incomplete_with_its_reason(
    content: str, only: set[int] | None
) -> None:
    data = cut_export(content, after=8, only=only)
    verdict = verify_export(bytes_lines(data), SIGNER.verifier())
    assert not verdict.ok
    assert verdict.incomplete
    assert verdict.entries == (8 if only is None else 3)
    assert verdict.line == data.count(b"\n")  # the trailer, the last line
    assert "incomplete" in (verdict.reason or "")
    assert "after position 8" in (verdict.reason or "")
    assert "D-11" in (verdict.reason or "")
    assert "position 9 was altered" in (verdict.reason or "")


@pytest.mark.parametrize("content", ["jsonl", "csv"])
def test_an_export_stopped_before_its_checkpoint_is_incomplete(content: str) -> None:
    verdict = verify_export(
        bytes_lines(cut_export(content, after=0, signed_checkpoint=False)), SIGNER.verifier()
    )
    assert verdict.incomplete
    assert not verdict.ok
    assert "before its first entry" in (verdict.reason or "")


@pytest.mark.parametrize("content", ["jsonl", "csv"])
def test_an_incomplete_export_is_checked_line_by_line_and_its_trailer_signed(
    content: str,
) -> None:
    data = cut_export(content, after=8)
    lines = data.split(b"\n")
    for offset, line, verdict in single_byte_changes(data, 5):
        assert not verdict.ok, offset
        if line is not None:
            assert not verdict.incomplete, (offset, verdict)  # rejected, not merely incomplete
            assert verdict.line == line, (offset, verdict)
    # A trailer not signed by the log's key is rejected, as a forged manifest is.
    forged = verify_export(
        bytes_lines(cut_export(content, after=8, signer=Signer.generate(ORIGIN))),
        SIGNER.verifier(),
    )
    assert not forged.ok
    assert not forged.incomplete
    assert "signature" in (forged.reason or "")
    # A line removed before the trailer breaks the signed digest.
    removed = lines[:3] + lines[4:]
    verdict = verify_export(bytes_lines(b"\n".join(removed)), SIGNER.verifier())
    assert not verdict.ok
    assert not verdict.incomplete
