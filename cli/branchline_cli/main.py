"""The ``branchline`` command."""

from __future__ import annotations

import sys

from branchline_cli.launch import hold_if_long_running

if __name__ == "__main__":  # ``python -m branchline_cli.main``: before the imports below (#12)
    hold_if_long_running(sys.argv[1:])

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
from branchline_cli.token_command import token
from branchline_shared.settings import BranchlineSettings

app = typer.Typer(
    help="Branchline: an event-sourced CRM on Kafka.", no_args_is_help=True, add_completion=False
)
app.add_typer(audit_app, name="audit")
app.add_typer(schemas_app, name="schemas")
app.add_typer(rebuild_app, name="rebuild")
app.command()(token)
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


if __name__ == "__main__":
    app()
