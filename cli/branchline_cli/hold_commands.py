"""``branchline audit holds ...``: legal holds placed and lifted as recorded decisions (D-11).

Each command records an entry in the audit ledger (acting as the audit writer role) with who
(``--actor``, default the OS user) and why (a closed reason code, a case reference).
``import-settings`` is the migration aid for the former configuration list
``BRANCHLINE_RETENTION_LEGAL_HOLD_CLIENTS``: it records a hold for each listed client that has
none; retention itself only ever reads the recorded holds.
"""

from __future__ import annotations

import asyncio
import getpass
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from branchline_audit.adapters.database import open_role_pool
from branchline_audit.adapters.signing_key import SigningKeyError
from branchline_audit.application.holds import HoldActor, lift_hold, list_holds, place_hold
from branchline_audit.application.ports import AuditLedger
from branchline_audit.bootstrap import audit_context, prepare_database
from branchline_audit.domain.relationships import HoldRefused, LegalHold, hold_subject
from branchline_audit.domain.verification import AlteredEntry
from branchline_shared.clock import SystemClock
from branchline_shared.events.vocabulary import LegalHoldReason, LegalHoldReleaseReason
from branchline_shared.settings import BranchlineSettings

holds_app = typer.Typer(
    help="Legal holds on a client's records, placed and lifted as ledger entries (D-11).",
    no_args_is_help=True,
)
T = TypeVar("T")


def _actor(actor: str | None) -> HoldActor:
    return HoldActor(actor or f"cli:{getpass.getuser()}", "auditor")


async def _with_ledger(work: Callable[[AuditLedger], Awaitable[T]]) -> T:
    settings = BranchlineSettings()
    await prepare_database(settings)
    pool = await open_role_pool(settings, settings.audit_db_writer_role, min_size=1, max_size=2)
    try:
        # The service's ledger: its reads of holds held against the signed checkpoints
        # (D-11, #12); a bare PostgresLedger refuses them (UncheckedFacts).
        return await work(audit_context(settings, pool, SystemClock()).ledger)
    finally:
        await pool.close()


def _hold(hold: LegalHold) -> dict[str, Any]:
    return {**hold.__dict__, "staff_id": hold.staff_id, "placed_at": hold.placed_at.isoformat()}


def _run(work: Callable[[AuditLedger], Awaitable[Any]]) -> Any:
    try:
        return asyncio.run(_with_ledger(work))
    except (HoldRefused, AlteredEntry) as error:
        typer.echo(f"refused ({error.rule}): {error.detail}", err=True)
        raise typer.Exit(2) from None
    except SigningKeyError as error:
        # the holds cannot be held against the signed checkpoints without the log's key
        typer.echo(f"refused (D-11): {error}", err=True)
        raise typer.Exit(2) from None


@holds_app.command()
def place(
    hold_id: Annotated[str, typer.Option(help="The hold's id (e.g. the matter number).")],
    reason: Annotated[LegalHoldReason, typer.Option(help="Why the records are held.")],
    client: Annotated[str | None, typer.Option(help="The client whose records are held.")] = None,
    staff: Annotated[
        str | None, typer.Option(help="The member of staff whose own texts are held.")
    ] = None,
    case_reference: Annotated[str | None, typer.Option(help="The case or matter.")] = None,
    actor: Annotated[str | None, typer.Option(help="Who places it (default: OS user).")] = None,
) -> None:
    """Place a legal hold: none of the client's records is pruned while it stands (with
    ``--staff``: the member of staff's own texts are not destroyed while it stands)."""
    try:
        subject = hold_subject(client_id=client, staff_id=staff)
    except ValueError as error:
        raise typer.BadParameter(f"{error} (--client or --staff)") from None
    hold, position = _run(
        lambda ledger: place_hold(
            ledger,
            SystemClock(),
            actor=_actor(actor),
            client_id=subject,
            hold_id=hold_id,
            reason=reason.value,
            case_reference=case_reference,
        )
    )
    typer.echo(json.dumps({"placed": _hold(hold), "position": position}, indent=2))


@holds_app.command()
def lift(
    hold_id: Annotated[str, typer.Argument(help="The standing hold to lift.")],
    reason: Annotated[LegalHoldReleaseReason, typer.Option(help="Why it is lifted.")],
    actor: Annotated[str | None, typer.Option(help="Who lifts it (default: OS user).")] = None,
) -> None:
    """Lift a standing legal hold (recorded; the client's records follow retention again)."""
    hold, position = _run(
        lambda ledger: lift_hold(
            ledger, SystemClock(), actor=_actor(actor), hold_id=hold_id, reason=reason.value
        )
    )
    typer.echo(json.dumps({"lifted": _hold(hold), "position": position}, indent=2))


@holds_app.command("list")
def list_command(
    client: Annotated[str | None, typer.Option(help="Only this client's holds.")] = None,
    staff: Annotated[str | None, typer.Option(help="Only this member of staff's.")] = None,
) -> None:
    """The standing holds, as recorded in the ledger."""
    subject = client if staff is None else hold_subject(client_id=None, staff_id=staff)
    holds = _run(lambda ledger: list_holds(ledger, subject))
    typer.echo(json.dumps([_hold(h) for h in holds], indent=2))


@holds_app.command("import-settings")
def import_settings(
    actor: Annotated[str | None, typer.Option(help="Who records them (default: OS user).")] = None,
) -> None:
    """Migration aid: record a hold for each client of BRANCHLINE_RETENTION_LEGAL_HOLD_CLIENTS that
    has no standing hold (hold id ``settings-<client>``, reason ``other``)."""
    settings = BranchlineSettings()

    async def work(ledger: AuditLedger) -> list[str]:
        held = {h.client_id for h in await list_holds(ledger)}
        recorded = []
        for client in sorted(set(settings.retention_legal_hold_clients) - held):
            await place_hold(
                ledger,
                SystemClock(),
                actor=_actor(actor),
                client_id=client,
                hold_id=f"settings-{client}",
                reason=LegalHoldReason.OTHER.value,
                case_reference="settings-migration",
            )
            recorded.append(client)
        return recorded

    typer.echo(json.dumps({"recorded": _run(work)}, indent=2))
