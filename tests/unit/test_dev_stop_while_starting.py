"""Ctrl-C (SIGINT) or SIGTERM to ``branchline dev`` while the stack starts (#12): the start is
interrupted wherever it is, the stack is stopped in order, the command exits 0.

Before, Python's own Ctrl-C handling only cancelled the coroutine of an ``asyncio.run`` step
(preparing the databases, creating topics); a step that swallowed the cancel went on, the
stack came up and ran on as if no Ctrl-C had come (seen on the dev stack: a Ctrl-C a few
seconds into ``branchline dev``). A SIGTERM killed the command at once, leaving PostgreSQL
and the broker running (their own sessions: only the components die with the command)."""

from __future__ import annotations

import signal
import sys
import textwrap
from pathlib import Path

import pytest
from tests.support.processes import stopped_by

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

# run_dev with a stack whose start is one asyncio step that swallows a cancel (as a retry
# loop or a lost cancel does); the rest of the stack only says what it was asked to do.
_DEV = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from branchline_cli import devstack
    from branchline_shared.settings import BranchlineSettings

    async def step():
        print("starting", flush=True)
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            pass

    devstack.DevStack.start = lambda self: asyncio.run(step())
    devstack.DevStack.banner = lambda self: print("up", flush=True)
    devstack.DevStack.supervise = lambda self: print("supervising", flush=True) or 0
    devstack.DevStack.stop = lambda self: print("stopped in order", flush=True)
    raise SystemExit(devstack.run_dev(BranchlineSettings(data_dir=Path(sys.argv[1]))))
    """
)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_while_the_dev_stack_starts_stops_it_in_order(
    tmp_path: Path, sig: signal.Signals
) -> None:
    code, output = stopped_by([sys.executable, "-c", _DEV, str(tmp_path)], sig, ready=b"starting")
    # Before: SIGINT: "up", "supervising" (the Ctrl-C lost); SIGTERM: -15, nothing stopped.
    assert code == 0, output
    assert output.split() == ["stopped", "in", "order"], output


# The command's first lines hold the stop signals (branchline_cli.launch), then one comes while
# it still imports (here: sent to itself right after the hold).
_DEV_SIGNALLED_EARLY = textwrap.dedent(
    """
    import os, sys
    from branchline_cli.launch import hold_if_long_running
    hold_if_long_running(["dev"])
    os.kill(os.getpid(), int(sys.argv[2]))
    print("importing", flush=True)
    """
) + _DEV.replace("raise SystemExit", "print('run_dev', flush=True)\nraise SystemExit")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_while_the_dev_command_imports_stops_it_before_anything_starts(
    tmp_path: Path, sig: signal.Signals
) -> None:
    code, output = stopped_by(
        [sys.executable, "-c", _DEV_SIGNALLED_EARLY, str(tmp_path), str(int(sig))],
        signal.SIGCONT,  # harmless: the stop signal was sent already
        ready=b"importing",
    )
    # Before the hold: SIGTERM -15, SIGINT a KeyboardInterrupt while importing (-2).
    assert code == 0, output
    assert output.split() == ["run_dev", "stopped", "in", "order"], output
