"""What is left of the intake API's parent once its processes are forked (#12).

The parent imports the whole command line and application before it forks (the children
build their apps from it), about 90 MB that it never uses again: it only forwards stop
signals and waits. It therefore replaces itself (``exec``, same pid, so the children stay its
children) with this module, which imports nothing but the standard library. Kept free of
every other import on purpose: whatever this module imports stays resident for the life of
the component.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys


def wait_for_children(children: list[int]) -> int:
    """Forward SIGTERM/SIGINT to the children and wait for all of them; if one fails, stop
    the others and fail as a whole (0 only when every child stopped cleanly)."""
    stopping = False

    def forward(signum: int, _: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    # the parent blocked them before it forked (processes.py): one sent since, pending through
    # the ``exec`` here, is forwarded now (#12)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, (signal.SIGTERM, signal.SIGINT))
    code = 0
    alive = set(children)
    while alive:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        if pid not in alive:
            continue
        alive.discard(pid)
        exit_code = os.waitstatus_to_exitcode(status)
        # A child stops with 0 (DrainingServer); one signalled before it handled signals (still
        # importing) ends by the signal's default action, a stop as well.
        clean = exit_code == 0 or (stopping and -exit_code in (signal.SIGTERM, signal.SIGINT))
        if not clean and code == 0:
            code = 1
            forward(signal.SIGTERM, None)  # one failed: stop the others, fail as a whole
    return code


def become_supervisor(children: list[int]) -> int:
    """Exec this module in place of the current process (does not return); where exec fails,
    supervise from the current process instead."""
    sys.stdout.flush()
    sys.stderr.flush()
    argv = [sys.executable, "-m", __name__, *map(str, children)]
    try:
        os.execv(sys.executable, argv)  # noqa: S606 - our own interpreter and module
    except OSError:
        return wait_for_children(children)


if __name__ == "__main__":
    raise SystemExit(wait_for_children([int(pid) for pid in sys.argv[1:]]))
