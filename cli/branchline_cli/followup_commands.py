"""``branchline rebuild followup`` (and ``branchline followup rebuild``): rebuild the followup
read models from the event topics, blue/green, with a progress bar."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from branchline_shared.settings import BranchlineSettings

followup_app = typer.Typer(help="The followup service's operations.", no_args_is_help=True)
rebuild_app = typer.Typer(help="Rebuild a service's read models.", no_args_is_help=True)

KeepOption = Annotated[
    bool,
    typer.Option(
        "--keep-previous",
        help="Keep the replaced read models as schema fu_retired_<n> (for comparison).",
    ),
]
BatchOption = Annotated[
    int, typer.Option("--batch-size", min=1, max=10_000, help="Events per transaction.")
]


def rebuild_followup_read_models(
    settings: BranchlineSettings,
    *,
    keep_previous: bool,
    batch_size: int,
    console: Console,
    from_stores: bool = False,
    processes: int = 1,
) -> None:
    from branchline_followup.adapters.rebuild_target import SwapAbandoned, SwapLockBusy
    from branchline_followup.bootstrap import rebuild
    from branchline_followup.domain.stream_order import TooManyHeld

    with Progress(
        TextColumn("[bold]followup[/bold] rebuilding"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("events", total=None)
        try:
            result = asyncio.run(
                rebuild(
                    settings,
                    on_total=lambda total: progress.update(task, total=total),
                    on_progress=lambda n: progress.advance(task, n),
                    keep_retired=keep_previous,
                    batch_size=batch_size,
                    from_stores=from_stores,
                    settle_heap=True,  # a process of its own (#12)
                    processes=processes,
                )
            )
        except (SwapLockBusy, SwapAbandoned, TooManyHeld) as exc:
            # the swap's bounded waits, the topic order's bounded hold (#12): said plainly,
            # not as a traceback
            console.print(f"[bold red]not swapped:[/bold red] {exc}")
            raise typer.Exit(code=1) from exc
    console.print(
        f"swapped in: {result.applied} events applied, {result.skipped} skipped "
        f"(dead-lettered when live), {result.caught_up} caught up before and at the swap"
        + (
            f"; the swap lock was busy {result.swap_lock_waits} time(s) before it was taken"
            if result.swap_lock_waits
            else ""
        )
        + (f"; previous read models kept as {result.retired}" if result.retired else "")
    )


FromStoresOption = Annotated[
    bool,
    typer.Option(
        "--from-stores",
        help="Read the event stores instead of the topics (a broker that lost its log).",
    ),
]


ProcessesOption = Annotated[
    int | None,
    typer.Option(
        "--processes",
        min=1,
        max=64,
        help="Processes applying the log's clients (each the clients whose id hashes to it; "
        "1: one process, as before); default BRANCHLINE_FOLLOWUP_REBUILD_PROCESSES (1).",
    ),
]


MaxHeldOption = Annotated[
    int | None,
    typer.Option(
        "--max-held",
        min=1,
        max=10_000_000,
        help="Events held back at most while their streams wait for a missing version (a "
        "rebuild from the topics; one more: nothing swapped); default "
        "BRANCHLINE_FOLLOWUP_REBUILD_MAX_HELD (10000).",
    ),
]


@rebuild_app.command("followup")
def rebuild_followup(
    keep_previous: KeepOption = False,
    batch_size: BatchOption = 500,
    from_stores: FromStoresOption = False,
    processes: ProcessesOption = None,
    max_held: MaxHeldOption = None,
) -> None:
    """Rebuild the followup read models from the event topics, or the event stores
    (blue/green: the API keeps serving the old ones until the new ones are swapped in)."""
    settings = BranchlineSettings()
    if max_held is not None:  # the option overrides the setting (#12)
        settings = settings.model_copy(update={"followup_rebuild_max_held": max_held})
    rebuild_followup_read_models(
        settings,
        keep_previous=keep_previous,
        batch_size=batch_size,
        console=Console(),
        from_stores=from_stores,
        processes=settings.followup_rebuild_processes if processes is None else processes,
    )


@followup_app.command("rebuild")
def followup_rebuild(
    keep_previous: KeepOption = False,
    batch_size: BatchOption = 500,
    from_stores: FromStoresOption = False,
    processes: ProcessesOption = None,
    max_held: MaxHeldOption = None,
) -> None:
    """Same as ``branchline rebuild followup``."""
    rebuild_followup(
        keep_previous=keep_previous,
        batch_size=batch_size,
        from_stores=from_stores,
        processes=processes,
        max_held=max_held,
    )
