"""``branchline privacy ...``: carry out due erasures (D-04, D-11), rotate the master key.

See docs/privacy.md for the key hierarchy and the rotation procedure.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from branchline_shared.settings import BranchlineSettings

privacy_app = typer.Typer(
    help="Data-subject rights: erasure that destroys (shred-due), master-key rotation.",
    no_args_is_help=True,
)


@privacy_app.command("shred-due")
def shred_due_command(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what is pending and when; destroy nothing.")
    ] = False,
) -> None:
    """Destroy the data keys of clients and members of staff (#staff/<id>) whose erasure is
    due (retention run out, or none applies) and record client.personal_data_shredded or
    staff.personal_data_shredded for each."""
    from branchline_followup.adapters.legal_holds import LegalHoldsUnknown
    from branchline_followup.erasure_operations import shred_due_once
    from branchline_shared.events.sealing_keys import STAFF_KEY_PREFIX

    try:
        statuses = asyncio.run(shred_due_once(BranchlineSettings(), dry_run=dry_run))
    except LegalHoldsUnknown as exc:
        typer.echo(f"nothing destroyed: {exc} (BRANCHLINE_PRIVACY_LEGAL_HOLDS_URL)", err=True)
        raise typer.Exit(1) from None
    for s in statuses:
        plan = s.plan
        status = (
            "shredded"
            if s.shredded
            else "legal hold"
            if s.held
            else "pending"
            if plan
            else "no date yet (employed)"
            if s.client_id.startswith(STAFF_KEY_PREFIX)
            else "no date yet (relationship lasts)"
        )
        typer.echo(
            f"{s.client_id}\terasure requested {s.erasure_requested_at.isoformat()}"
            f"\tbasis {plan.basis.value if plan else '-'}"
            f"\tdue {plan.due_at.isoformat() if plan else '-'}\t{status}"
        )
    shredded = sum(1 for s in statuses if s.shredded)
    typer.echo(f"{shredded} shredded, {len(statuses) - shredded} pending")


@privacy_app.command("rotate-master-key")
def rotate_master_key_command(
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, max=10_000, help="Keys per transaction.")
    ] = 500,
) -> None:
    """Re-wrap every client data key with the current master key (BRANCHLINE_MASTER_KEY),
    unwrapping with the previous ones (BRANCHLINE_MASTER_KEYS_PREVIOUS). No event and no
    sealed value changes."""
    from branchline_shared.crypto.keystore import open_configured_key_store

    async def rotate() -> None:
        keys, pool = await open_configured_key_store(BranchlineSettings())
        try:
            report = await keys.rotate(batch_size=batch_size)
        finally:
            await pool.close()
        typer.echo(
            f"master key {report.master_key_id}: {report.rewrapped} data keys re-wrapped, "
            f"{report.already_current} already current, {report.destroyed} destroyed"
        )

    asyncio.run(rotate())
