"""The trail readers' check against a signed checkpoint (Round 28, D-11, #12), before and
after, alternated pairs in one process.

Starts an embedded PostgreSQL only, fills a ledger with ``--entries`` entries
(``bench/export_ledger.py``: 2,000 clients), signs a checkpoint every ``--every`` entries (as
``BRANCHLINE_AUDIT_CHECKPOINT_EVERY_ENTRIES``' default does), then ``--pairs`` alternated
pairs (A B B A ...) of ``profile_trail_links``' steps: ``--pages`` pages of 100 by position,
``--pages`` pages of one client each, a whole jsonl export.

"before" is the reads without the check, put back for the step: ``with_neighbours`` as of
``--before`` (no ``signed_leaf`` column) and no ``unsigned_history`` / ``unsigned_latest``
call; "after" the code now. Before the pairs, one "after" pass proves every checkpoint the
steps meet (once per process; its cost is printed apart). The answers of the two are compared
equal in every pair.

    python -m bench.profile_signed_reads [--entries 100000] [--pairs 4] [--pages 200]
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.export_ledger import filled_audit  # noqa: E402
from bench.profile_served_check import export_text  # noqa: E402
from bench.profile_trail_links import measure_pairs, pages, unchecked  # noqa: E402
from bench.scratch import run_in_scratch  # noqa: E402
from branchline_audit.adapters import ledger as ledger_module  # noqa: E402
from branchline_audit.application import checkpointing, exporting, querying  # noqa: E402
from branchline_audit.application.context import AuditContext  # noqa: E402
from branchline_audit.domain.note import sign_checkpoint  # noqa: E402

ALTERED = "services/audit/branchline_audit/adapters/altered.py"


def altered_at(commit: str, folder: Path) -> Any:
    """``adapters/altered.py`` as of ``commit``, loaded as a module of its own."""
    text = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{commit}:{ALTERED}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = folder / "altered_before.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("altered_before", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def patched(before: Any) -> list[tuple[Any, str, Any, Any]]:
    """(namespace, name, before's, now's) for every name the two states differ in."""
    return [
        (
            ledger_module,
            "with_neighbours",
            before.with_neighbours,
            vars(ledger_module)["with_neighbours"],
        ),
        (querying, "unsigned_history", unchecked, vars(querying)["unsigned_history"]),
        (exporting, "unsigned_history", unchecked, vars(exporting)["unsigned_history"]),
        (checkpointing, "unsigned_latest", unchecked, vars(checkpointing)["unsigned_latest"]),
    ]


async def sign_every(audit: AuditContext, n: int, every: int) -> int:
    """Checkpoints at every ``every`` entries up to ``n`` (as the checkpointer signs them)."""
    pool = audit.ledger._pool  # type: ignore[attr-defined]  # the bench's own ledger
    count = 0
    for size in range(every, n + 1, every):
        hasher = await audit.ledger.range_hasher([(0, size)])
        root = hasher(0, size)
        note = sign_checkpoint(audit.signer, audit.origin, size, root)
        await pool.execute(
            "INSERT INTO audit_checkpoints (tree_size, root_hash, note, created_at) "
            "VALUES ($1, $2, $3, now())",
            size,
            root,
            note,
        )
        count += 1
    return count


async def measure(args: argparse.Namespace, base: Path) -> None:
    n = args.entries
    swaps = patched(altered_at(args.before, base))
    steps = (
        ("page", lambda a: pages(a, n, args.pages, clients=False)),
        ("client", lambda a: pages(a, n, args.pages, clients=True)),
        ("export", export_text),
    )
    async with filled_audit(base, n) as audit:
        print(f"{await sign_every(audit, n, args.every)} checkpoints signed", flush=True)
        started, cpu = time.perf_counter(), time.process_time()
        for _, call in steps:  # proves the checkpoints the steps meet, once
            await call(audit)
        print(
            f"warm-up (after, proving {len(audit.signed_leaves)} checkpoints): "
            f"{1e3 * (time.perf_counter() - started):.0f} ms wall, "
            f"{1e3 * (time.process_time() - cpu):.0f} ms cpu",
            flush=True,
        )
        await measure_pairs(audit, steps, swaps, n, args.pages, args.pairs)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--pairs", type=int, default=4)
    parser.add_argument("--pages", type=int, default=200)
    parser.add_argument("--before", default="main", help="the commit of the code before")
    return run_in_scratch(measure, parser.parse_args(), "bl-signed-reads-")


if __name__ == "__main__":
    raise SystemExit(main())
