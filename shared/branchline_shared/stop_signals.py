"""A stop signal (SIGTERM, SIGINT) that reaches a process before it handles signals is kept
for its handling: not its death by the signal, not lost (#12).

A component's process spends its first seconds importing (about 2.5 s for ``branchline run``
on a 2-core machine) and building its app before its own handling is in place (uvicorn's
for an API, the event loop's for a worker, the dev stack's, the intake supervisor's). A
SIGTERM then ended it by the signal's default action (-15, shown as 143: Kubernetes'
``Error``, a restart to ``restart: on-failure``), a SIGINT with a ``KeyboardInterrupt``
traceback, then by the signal too (-2). So the command's first lines, before any heavy
import, :func:`hold` the stop signals: one that arrives is remembered, and the process's own
handling, once in place, calls :func:`hand_over` (raises it again, to that handling) or
:func:`taken` (a worker sets its stop event): the process then stops as if the signal had
come that moment (a start cut short, exit 0).

What is left is the interpreter's own start (tens of milliseconds, before any of our code
runs). A parent of ours closes that too: it starts the process with the stop signals
blocked (:func:`blocked_in_child`, a ``preexec_fn``; a blocked signal waits, pending, through
``exec``), and :func:`hold` unblocks them once it is in place, so one sent meanwhile is
remembered as well. A process started by anything else (a container runtime, systemd) can
still die of a signal sent in that first window; nothing is open then.

Standard library only: this is imported before everything else.
"""

from __future__ import annotations

import signal
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_held: list[int] = []


def hold() -> None:
    """From now on a stop signal is remembered until :func:`hand_over`, not acted on; stop
    signals a parent blocked for this process are let through (one pending is remembered)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, _remember)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def held() -> tuple[int, ...]:
    """The stop signals remembered and not yet handed over."""
    return tuple(_held)


def taken() -> bool:
    """Forget the stop signals held so far; whether there were any (for handling that is
    told directly rather than by the signal: a worker's stop event)."""
    had = bool(_held)
    _held.clear()
    return had


def hand_over() -> None:
    """Raise again, to the handlers just installed in place of the hold's, each stop signal
    held so far (in the order they came). Nothing held (no hold, or none came): nothing."""
    pending = list(_held)
    _held.clear()
    for sig in pending:
        signal.raise_signal(sig)


def blocked_in_child() -> None:
    """A ``preexec_fn`` for a process of ours: it starts with the stop signals blocked, so one
    sent before its first line runs waits for its :func:`hold` instead of killing it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def _remember(signum: int, _: FrameType | None) -> None:
    if signum not in _held:
        _held.append(signum)
