"""The ``branchline`` command's first lines (#12): the long-running commands (``run``,
``dev``) hold the stop signals before anything heavy is imported, so a SIGTERM or Ctrl-C
while the process still imports or builds its app stops it cleanly once its own handling is
in place (``branchline_shared.stop_signals``). The other commands keep Python's defaults (a
Ctrl-C interrupts them at once). Standard library and ``stop_signals`` only."""

from __future__ import annotations

import sys

from branchline_shared import stop_signals

LONG_RUNNING = frozenset({"run", "dev"})


def hold_if_long_running(args: list[str]) -> None:
    """``args``: the command line after the program's name."""
    command = next((arg for arg in args if not arg.startswith("-")), None)
    if command in LONG_RUNNING:
        stop_signals.hold()


def main() -> None:
    """The ``branchline`` console script."""
    hold_if_long_running(sys.argv[1:])
    from branchline_cli.main import app

    app()
