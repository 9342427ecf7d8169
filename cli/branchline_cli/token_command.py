"""``branchline token``: print a signed, short-lived token (docs/access-control.md)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from branchline_shared.http.auth import Role
from branchline_shared.http.token_keys import SERVICES, audiences_for, service_audience, token_codec
from branchline_shared.settings import BranchlineSettings


def token(
    role: Annotated[list[Role], typer.Option(help="A role; repeat for several.")],
    sub: Annotated[str, typer.Option(help="The subject: a staff or system id.")],
    branch: Annotated[
        str | None,
        typer.Option(help="The branch a branch system speaks for (required to write events)."),
    ] = None,
    service: Annotated[
        list[str] | None,
        typer.Option(
            help=f"A service the token is for ({', '.join(SERVICES)}); repeat for several. "
            "Default: the services of the role(s)."
        ),
    ] = None,
    ttl_hours: Annotated[
        float | None,
        typer.Option(
            help="Lifetime in hours (default and maximum: BRANCHLINE_JWT_MAX_LIFETIME_HOURS)."
        ),
    ] = None,
) -> None:
    """Print a signed JWT for the given role(s) (dev: key from the data folder)."""
    settings = BranchlineSettings()
    for name in service or []:
        if name not in SERVICES:
            raise typer.BadParameter(f"unknown service {name!r}", param_hint="--service")
    if Role.BRANCH_SYSTEM in role and branch is None:
        typer.echo("note: a branch-system token without --branch cannot write events", err=True)
    maximum = settings.jwt_max_lifetime_hours
    hours = maximum if ttl_hours is None else ttl_hours
    if not 0 < hours <= maximum:
        raise typer.BadParameter(
            f"must be more than 0 and at most {maximum}", param_hint="--ttl-hours"
        )
    audiences = (
        [service_audience(settings, s) for s in service]
        if service
        else audiences_for(settings, role)
    )
    codec = token_codec(settings, "intake")
    try:
        issued = codec.issue(
            sub,
            role,
            ttl=timedelta(hours=hours),
            now=datetime.now(UTC),
            branch_id=branch,
            audiences=audiences,
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    typer.echo(issued)
