"""``branchline audit ...``: verify the trail, verify an export offline, prune by retention.

``verify`` and ``prune`` read the database named by the settings (``BRANCHLINE_AUDIT_DATABASE_URL``)
acting as the audit roles; ``verify-export`` needs no database and no network: a file and the
log's verifier key (``GET /v1/audit/public-key`` or ``branchline audit public-key``).
"""

from __future__ import annotations

import asyncio
import getpass
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from branchline_audit.adapters.checkpoints import PostgresCheckpoints
from branchline_audit.adapters.database import open_role_pool
from branchline_audit.adapters.ledger import PostgresLedger
from branchline_audit.adapters.segments import ProcessSegmentVerifiers
from branchline_audit.adapters.signing_key import SigningKeyError, load_signer, signing_key_path
from branchline_audit.application.pruning import PruneOutcome, prune_expired
from branchline_audit.application.verifying import verify_ledger
from branchline_audit.bootstrap import audit_context, prepare_database, retention_policy
from branchline_audit.domain.export import ExportVerdict, file_lines, verify_export
from branchline_audit.domain.note import NoteError, Verifier
from branchline_audit.domain.retention import RetentionError
from branchline_audit.domain.verification import LedgerVerdict
from branchline_cli.hold_commands import holds_app
from branchline_shared.clock import SystemClock
from branchline_shared.settings import BranchlineSettings

audit_app = typer.Typer(
    help="The audit trail: verify it, verify an export offline, prune by retention (D-11).",
    no_args_is_help=True,
)
audit_app.add_typer(holds_app, name="holds")
console = Console(stderr=True)


def _verifier(settings: BranchlineSettings) -> Verifier | None:
    if not signing_key_path(settings).exists() and settings.audit_signing_key_file is None:
        return None
    return load_signer(settings).verifier()


UNSIGNED = (
    "the checkpoints' signatures (no key: the log's signing key is not here and no "
    "--public-key was given): each stored checkpoint's root was compared with the tree "
    "recomputed from the entries, but not that the log signed it, so a rewrite of the ledger "
    "with its checkpoints rewritten too passes"
)
"""What ``audit verify --chain-only`` did not check (#12, Round 32)."""


async def _verify(
    settings: BranchlineSettings,
    show_progress: bool,
    processes: int | None,
    *,
    verifier: Verifier | None,
    signing_key_here: bool,
) -> LedgerVerdict:
    segments = ProcessSegmentVerifiers.configured(
        settings.audit_database_url,
        settings.audit_db_writer_role,
        processes=settings.audit_verify_processes if processes is None else processes,
        min_entries=settings.audit_verify_parallel_min_entries,
    )
    pool = await open_role_pool(settings, settings.audit_db_writer_role, min_size=1, max_size=2)
    try:
        # The service's ledger where the log's key is here (D-11, #12; Round 31): no read of
        # it goes unchecked. Without it (an auditor's --public-key, or --chain-only) the
        # ledger is a bare one: verify reads the entries in order, never a hold through the
        # holds' reads (a bare ledger refuses those: UncheckedFacts); holds and relationship
        # ends are entries, checked in the chain as every other.
        ledger = (
            audit_context(settings, pool, SystemClock()).ledger
            if signing_key_here
            else PostgresLedger(pool)
        )
        total = await ledger.size()
        with Progress(
            TextColumn("verifying the audit trail"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not show_progress,
        ) as progress:
            task = progress.add_task("verify", total=total)
            return await verify_ledger(
                ledger,
                PostgresCheckpoints(pool),
                verifier=verifier,
                origin=settings.audit_log_origin,
                progress=lambda done: progress.update(task, completed=done),
                segments=segments,
            )
    finally:
        await pool.close()


@audit_app.command()
def verify(
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    processes: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=64,
            help="Check the ledger in this many processes, each a range of positions (0: "
            "automatic, one per core for a ledger of at least "
            "BRANCHLINE_AUDIT_VERIFY_PARALLEL_MIN_ENTRIES entries; 1: one pass; N: N whatever "
            "its size); default BRANCHLINE_AUDIT_VERIFY_PROCESSES.",
        ),
    ] = None,
    public_key: Annotated[
        str | None,
        typer.Option(
            "--public-key",
            help="Check the checkpoints' signatures with this verifier key (name+id+key, or a "
            "file holding it or the JSON of GET /v1/audit/public-key), the auditor's own copy; "
            "default: the log's signing key where it is here.",
        ),
    ] = None,
    chain_only: Annotated[
        bool,
        typer.Option(
            "--chain-only",
            help="With no key at all: check the chain and each checkpoint's root but not its "
            "signature (the report says so: signatures_checked false). Without this option "
            "and without a key, verify refuses (exit 2).",
        ),
    ] = False,
) -> None:
    """Recompute the hash chain and check every signed checkpoint (exit 1 if anything fails;
    exit 2 if there is no key to check the signatures with and --chain-only was not given)."""
    settings = BranchlineSettings()
    try:
        signing = _verifier(settings)
    except SigningKeyError as error:
        typer.echo(f"refused (D-11): nothing verified: {error}", err=True)
        raise typer.Exit(2) from None
    verifier = _read_verifier_key(public_key) if public_key is not None else signing
    if verifier is None and not chain_only:
        typer.echo(
            "refused (D-11): nothing verified: no key to check the checkpoints' signatures "
            f"with (the log's signing key {signing_key_path(settings)} is not here): pass "
            "--public-key with the log's verifier key (`branchline audit public-key` where "
            "the key is, or GET /v1/audit/public-key), or --chain-only to check the chain "
            "and the checkpoints' roots without their signatures",
            err=True,
        )
        raise typer.Exit(2)
    verdict = asyncio.run(
        _verify(
            settings, progress, processes, verifier=verifier, signing_key_here=signing is not None
        )
    )
    report: dict[str, object] = {
        "ok": verdict.ok,
        "entries": verdict.entries,
        "head": verdict.head,
        "first_bad_position": verdict.first_bad_position,
        "bad_positions": list(verdict.bad_positions),
        "bad_count": verdict.bad_count,
        "reason": verdict.reason,
        "checkpoints_checked": verdict.checkpoints_checked,
        "signatures_checked": verifier is not None,
    }
    if verifier is None:
        report["not_checked"] = UNSIGNED
        typer.echo(f"not checked: {UNSIGNED}", err=True)
    typer.echo(json.dumps(report, indent=2))
    if not verdict.ok:
        raise typer.Exit(1)


def _read_verifier_key(key: str) -> Verifier:
    candidate = Path(key)
    text = candidate.read_text(encoding="utf-8").strip() if candidate.is_file() else key.strip()
    if text.startswith("{"):
        text = str(json.loads(text).get("verifier_key", ""))  # the public-key endpoint's body
    try:
        return Verifier.from_verifier_key(text)
    except NoteError as error:
        raise typer.BadParameter(f"not a verifier key: {error}") from None


@audit_app.command("verify-export")
def verify_export_command(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    public_key: Annotated[
        str,
        typer.Option(
            "--public-key",
            help="The log's verifier key (name+id+key), or a file holding it or the JSON of "
            "GET /v1/audit/public-key.",
        ),
    ],
) -> None:
    """Check an export offline (no database, no network); exit 1 with the bad line if not,
    or with the server's reason if the export ends with its signed incomplete trailer."""
    verdict: ExportVerdict = verify_export(file_lines(str(file)), _read_verifier_key(public_key))
    if verdict.incomplete:
        # The server's signed trailer: it could not finish this export (#12).
        typer.echo(
            f"INCOMPLETE: {file}, line {verdict.line}: {verdict.reason} "
            f"({verdict.entries} entries before it verified; export it again)",
            err=True,
        )
        raise typer.Exit(1)
    if not verdict.ok:
        typer.echo(f"REJECTED: {file}, line {verdict.line}: {verdict.reason}", err=True)
        raise typer.Exit(1)
    kind = "complete" if verdict.complete else "filtered"
    typer.echo(
        f"OK: {verdict.entries} entries ({kind} export) proven against the signed checkpoint "
        f"of tree size {verdict.tree_size}"
    )


async def _prune(
    settings: BranchlineSettings, actor: str, client: str | None, dry_run: bool
) -> PruneOutcome:
    await prepare_database(settings)
    pool = await open_role_pool(settings, settings.audit_db_pruner_role, min_size=1, max_size=2)
    try:
        # The service's ledger: the relationship ends and legal holds the prune decides by are
        # held against the signed checkpoints (D-11, #12); a bare PostgresLedger refuses them.
        return await prune_expired(
            audit_context(settings, pool, SystemClock()).ledger,
            retention_policy(settings),
            SystemClock(),
            actor_id=actor,
            client_id=client,
            dry_run=dry_run,
        )
    finally:
        await pool.close()


@audit_app.command()
def prune(
    client: Annotated[str | None, typer.Option(help="Prune only this client's entries.")] = None,
    actor: Annotated[
        str | None, typer.Option(help="Who runs the prune (recorded); default: the OS user.")
    ] = None,
    dry_run: Annotated[bool, typer.Option(help="Only count what would be pruned.")] = False,
) -> None:
    """Drop the payloads of entries past their retention period (D-11), keeping every hash.

    A client's records count from the end of the relationship (account closure) recorded in
    the ledger; clients under a recorded legal hold are never pruned; the prune is itself
    recorded in the ledger. An entry altered behind the ledger's back (a time no append
    writes) is skipped and named under ``altered_skipped``; a relationship end or legal hold
    so altered refuses the prune before anything is written (exit 2).
    """
    settings = BranchlineSettings()
    who = actor or f"cli:{getpass.getuser()}"
    try:
        outcome = asyncio.run(_prune(settings, who, client, dry_run))
    except RetentionError as error:
        typer.echo(f"refused ({error.rule}): {error}", err=True)
        raise typer.Exit(2) from None
    except SigningKeyError as error:
        # the holds cannot be held against the signed checkpoints without the log's key
        typer.echo(f"refused (D-11): nothing is pruned: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        json.dumps(
            {
                "dry_run": dry_run,
                "pruned": outcome.pruned,
                "positions": outcome.ranges,
                "cutoffs": outcome.cutoffs,
                "held_clients_skipped": sorted(outcome.held_clients_skipped),
                # Entries altered behind the ledger's back, never pruned (D-11, #12).
                "altered_skipped": {str(p): why for p, why in outcome.altered_skipped.items()},
            },
            indent=2,
        )
    )


@audit_app.command("public-key")
def public_key() -> None:
    """Print the log's verifier key (what verify-export --public-key takes)."""
    settings = BranchlineSettings()
    typer.echo(load_signer(settings).verifier_key_string())


@audit_app.command()
def keygen(
    out: Annotated[Path, typer.Option(help="Where to write the new signing key (mode 0600).")],
) -> None:
    """Create a production signing key for the log (mount it as BRANCHLINE_AUDIT_SIGNING_KEY_FILE)
    and print its verifier key, the one auditors keep."""
    from branchline_audit.domain.note import Signer

    if out.exists():
        console.print(f"[red]{out} exists: a log keeps its key; refusing to overwrite it[/]")
        raise typer.Exit(2)
    signer = Signer.generate(BranchlineSettings().audit_log_origin)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.touch(mode=0o600)
    out.write_text(signer.signer_key_string() + "\n")
    typer.echo(signer.verifier_key_string())
