"""The stop signals' hold (``branchline_shared.stop_signals``, #12): a SIGTERM or SIGINT before
a process handles signals is remembered, and handed to its handling once that is in place.
Each test puts this process's handlers and signal mask back as they were."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from types import FrameType

import pytest

from branchline_cli.launch import hold_if_long_running
from branchline_shared import stop_signals

pytestmark = pytest.mark.unit


@pytest.fixture(autouse=True)
def _own_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in stop_signals.STOP_SIGNALS}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    stop_signals.taken()
    try:
        yield
    finally:
        stop_signals.taken()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_a_stop_signal_while_held_is_remembered_not_acted_on() -> None:
    stop_signals.hold()
    signal.raise_signal(signal.SIGTERM)  # would end this process by its default action
    signal.raise_signal(signal.SIGINT)  # would raise KeyboardInterrupt
    signal.raise_signal(signal.SIGTERM)
    assert stop_signals.held() == (signal.SIGTERM, signal.SIGINT)


def test_the_handling_installed_later_is_handed_what_was_held() -> None:
    stop_signals.hold()
    signal.raise_signal(signal.SIGINT)
    got: list[int] = []

    def handler(signum: int, _: FrameType | None) -> None:
        got.append(signum)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    stop_signals.hand_over()
    assert got == [signal.SIGINT]
    assert stop_signals.held() == ()
    stop_signals.hand_over()  # handed over once
    assert got == [signal.SIGINT]


def test_nothing_held_hands_over_nothing() -> None:
    got: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _: got.append(signum))
    stop_signals.hand_over()
    assert got == []
    assert stop_signals.taken() is False


def test_taken_tells_a_stop_was_held_and_forgets_it() -> None:
    stop_signals.hold()
    signal.raise_signal(signal.SIGTERM)
    assert stop_signals.taken() is True
    assert stop_signals.taken() is False


def test_a_signal_a_parent_blocked_is_held_once_the_hold_is_in_place() -> None:
    stop_signals.blocked_in_child()  # as a child of ours starts (here: this process)
    signal.raise_signal(signal.SIGTERM)  # pending while blocked: nothing happens yet
    assert signal.SIGTERM in signal.sigpending()
    stop_signals.hold()
    assert signal.SIGTERM not in signal.sigpending()
    assert stop_signals.held() == (signal.SIGTERM,)
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


@pytest.mark.parametrize(
    ("args", "holds"),
    [
        (["run", "intake-api"], True),
        (["dev"], True),
        (["--help"], False),
        (["token", "--role", "admin"], False),
        (["rebuild", "followup"], False),
        ([], False),
    ],
)
def test_only_the_long_running_commands_hold_the_stop_signals(args: list[str], holds: bool) -> None:
    hold_if_long_running(args)
    for sig in stop_signals.STOP_SIGNALS:
        assert (signal.getsignal(sig) == stop_signals._remember) is holds
