"""``branchline statistics complaints``: the regulatory complaint statistics of a jurisdiction
profile and period (D-17), computed from the followup read models (which a rebuild derives
again from the events), as JSON or CSV: the same report ``GET /v1/statistics/complaints``
serves."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated

import typer

from branchline_followup.adapters.page_reads import PostgresPageReads
from branchline_followup.adapters.pg_schemas import LIVE_SCHEMA, with_search_path
from branchline_followup.application.config import policy_from_settings
from branchline_followup.application.service_loop import (
    StatisticsSelection,
    UnknownProfile,
    statistics,
)
from branchline_followup.domain.statistics import StatisticsReport, report_csv
from branchline_shared.postgres.pool import open_pool
from branchline_shared.settings import BranchlineSettings

statistics_app = typer.Typer(
    help="Regulatory statistics (D-17), reproducible from the events.", no_args_is_help=True
)


def _instant(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise typer.BadParameter(f"{text!r} needs an offset (RFC 3339)")
    return moment


async def _report(settings: BranchlineSettings, selection: StatisticsSelection) -> StatisticsReport:
    pool = await open_pool(
        with_search_path(settings.followup_database_url, LIVE_SCHEMA), min_size=1, max_size=2
    )
    try:
        return await statistics(
            PostgresPageReads(pool),
            selection,
            now=datetime.now(UTC),
            policy=policy_from_settings(settings),
        )
    finally:
        await pool.close()


@statistics_app.command()
def complaints(
    profile: Annotated[str, typer.Option(help="Jurisdiction profile, e.g. us_broker.")],
    period_from: Annotated[str, typer.Option("--from", help="Start (RFC 3339, inclusive).")],
    period_to: Annotated[str, typer.Option("--to", help="End (RFC 3339, exclusive).")],
    output: Annotated[str, typer.Option("--format", help="json or csv.")] = "json",
) -> None:
    """Complaints received at the profile's branches in [from, to), in its report format."""
    if output not in ("json", "csv"):
        raise typer.BadParameter("--format is json or csv")
    start, end = _instant(period_from), _instant(period_to)
    if start >= end:
        raise typer.BadParameter("--from must be before --to")
    try:
        report = asyncio.run(
            _report(BranchlineSettings(), StatisticsSelection(profile, start, end))
        )
    except UnknownProfile as error:
        typer.echo(f"refused: {error}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        report_csv(report) if output == "csv" else report.model_dump_json(indent=2), nl=False
    )
