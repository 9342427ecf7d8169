"""The ``branchline`` command."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from branchline_cli.audit_commands import audit_app
from branchline_cli.components import Component, run_component
from branchline_cli.dlq_commands import dlq_app
from branchline_cli.followup_commands import rebuild_app
from branchline_cli.loadgen import loadgen_command
from branchline_cli.privacy_commands import privacy_app
from branchline_cli.reconcile_commands import reconcile_command
from branchline_cli.schema_commands import schemas_app
from branchline_cli.statistics_commands import statistics_app
from branchline_shared.http.auth import Role, TokenCodec
from branchline_shared.settings import BranchlineSettings

app = typer.Typer(
    help="Branchline: an event-sourced CRM on Kafka.", no_args_is_help=True, add_completion=False
)
app.add_typer(audit_app, name="audit")
app.add_typer(schemas_app, name="schemas")
app.add_typer(rebuild_app, name="rebuild")
app.add_typer(privacy_app, name="privacy")
app.command("reconcile")(reconcile_command)
app.add_typer(dlq_app, name="dlq")
app.command("loadgen")(loadgen_command)
app.add_typer(statistics_app, name="statistics")


@app.command()
def dev() -> None:
    """Start the whole system on the embedded default (PostgreSQL, broker, all services)."""
    from branchline_cli.devstack import run_dev

    raise typer.Exit(run_dev(BranchlineSettings()))


@app.command()
def run(component: Component) -> None:
    """Run one component in the foreground (what `dev` and the containers run)."""
    run_component(component, BranchlineSettings())


@app.command()
def token(
    role: Annotated[list[Role], typer.Option(help="A role; repeat for several.")],
    sub: Annotated[str, typer.Option(help="The subject: a staff or system id.")],
    ttl_hours: Annotated[float, typer.Option(help="Lifetime in hours.")] = 12.0,
) -> None:
    """Print a signed JWT for the given role(s) (dev: secret from the data folder)."""
    settings = BranchlineSettings()
    codec = TokenCodec(settings.resolved_jwt_secret(), settings.jwt_issuer, settings.jwt_audience)
    typer.echo(codec.issue(sub, list(role), ttl=timedelta(hours=ttl_hours), now=datetime.now(UTC)))


if __name__ == "__main__":
    app()
