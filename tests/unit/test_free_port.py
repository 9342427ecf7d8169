"""Ports chosen for embedded servers cannot be taken between choice and bind (#12): they lie
outside the kernel's ephemeral range (no outgoing connection or port-0 bind gets them) and are
reserved, for the life of the process that chose them, against every other process choosing
ports the same way (the suite's xdist workers). Real processes, sockets and lock files."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from branchline_shared.embedded import ports
from branchline_shared.embedded.ports import free_port

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

# Chooses ``count`` ports (all of ``free_port``'s or, given candidates, one of those), prints
# them, and keeps them until its stdin closes.
_CHOOSER = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from branchline_shared.embedded import ports

    count, candidates = int(sys.argv[1]), json.loads(sys.argv[2])
    if candidates:
        mine = ports.PortReservations(Path(sys.argv[3]), candidates)
        chosen = [mine.choose() for _ in range(count)]
    else:
        chosen = [ports.free_port() for _ in range(count)]
    print(json.dumps(chosen), flush=True)
    sys.stdin.read()
    """
)


@contextmanager
def choosers(
    lock_dir: Path, how_many: int, count: int, candidates: list[int] | None = None
) -> Iterator[list[list[int]]]:
    """``how_many`` processes choosing at the same time; their ports, held until the end."""
    env = {"BRANCHLINE_PORT_LOCK_DIR": str(lock_dir)}
    argv = [str(count), json.dumps(candidates or []), str(lock_dir / "ports.lock")]
    started = [
        subprocess.Popen(
            [sys.executable, "-c", _CHOOSER, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **env},
        )
        for _ in range(how_many)
    ]
    try:
        chosen = []
        for process in started:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert line, f"a chooser failed (exit {process.wait(timeout=10)})"
            chosen.append(json.loads(line))
        yield chosen
    finally:
        for process in started:
            assert process.stdin is not None
            process.stdin.close()
            process.wait(timeout=10)
            assert process.stdout is not None
            process.stdout.close()


def test_processes_choosing_at_once_never_get_the_same_port(tmp_path: Path) -> None:
    # Ports chosen by binding port 0 and closing it came back again within a few hundred
    # choices, to the same process or another: nothing held them.
    with choosers(tmp_path, how_many=2, count=400) as (first, second):
        assert len(set(first)) == len(first)
        assert len(set(second)) == len(second)
        assert not set(first) & set(second)


def test_ports_lie_outside_the_ephemeral_range(tmp_path: Path) -> None:
    low, high = (int(part) for part in Path(ports.EPHEMERAL_RANGE_FILE).read_text().split())
    with choosers(tmp_path, how_many=1, count=200) as (chosen,):
        inside = [port for port in chosen if low <= port <= high]
    assert not inside, f"{len(inside)} of {len(chosen)} in the ephemeral range {low}-{high}"


def test_a_port_something_listens_on_is_never_chosen(tmp_path: Path) -> None:
    taken, free = free_port(), free_port()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", taken))
        listener.listen()
        for _ in range(5):  # whichever candidate the scan starts at
            mine = ports.PortReservations(tmp_path / f"{_}.lock", [taken, free])
            assert mine.choose() == free
        with pytest.raises(ports.NoFreePort):
            ports.PortReservations(tmp_path / "only.lock", [taken]).choose()


def test_a_port_another_process_holds_is_never_chosen_until_it_exits(tmp_path: Path) -> None:
    held, free = free_port(), free_port()
    lock = tmp_path / "ports.lock"
    with choosers(tmp_path, how_many=1, count=1, candidates=[held]) as ((theirs,),):
        assert theirs == held
        for _ in range(5):
            assert ports.PortReservations(lock, [held, free]).choose() == free
        with pytest.raises(ports.NoFreePort):
            ports.PortReservations(lock, [held]).choose()
    # A reservation goes with its process, however it ends.
    assert ports.PortReservations(lock, [held]).choose() == held


def test_one_process_never_gets_a_port_twice(tmp_path: Path) -> None:
    one, two = free_port(), free_port()
    mine = ports.PortReservations(tmp_path / "ports.lock", [one, two])
    assert {mine.choose(), mine.choose()} == {one, two}
    with pytest.raises(ports.NoFreePort):
        mine.choose()
    assert mine.held == {one, two}
