"""End to end: the stack exactly as `branchline dev` starts it, driven over HTTP like the
README's tour; Ctrl-C stops everything and leaves no process behind."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.support.dev_stack import DevStack, running_dev_stack
from tests.support.stack import runtime_dir

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def _pids_of_tree(root: int) -> set[int]:
    """The process and everything it started (by walking /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo.extend(children.get(pid, []))
    return found


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie has exited; only its parent has yet to reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.fixture(scope="module")
def dev_stack() -> Iterator[DevStack]:
    # Not under pytest's tmp folder: run as root, PostgreSQL runs as its own system user, and
    # pytest makes its temporary root private (0700) whenever another session starts; one
    # doing so just after the server started left `pg_ctl -w` unable to read the server's
    # pid file, waiting out its 60 s (a clean-clone run beside other sessions).
    folder = Path(tempfile.mkdtemp(prefix="dev-", dir=runtime_dir()))
    try:
        # the last test stops it with Ctrl-C itself; otherwise the helper does on the way out
        with running_dev_stack(folder / ".branchline") as stack:
            yield stack
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def wait_for(probe: object, within: float = 30.0) -> object:
    deadline = time.monotonic() + within
    while True:
        value = probe()  # type: ignore[operator]
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("not within the bounded wait")
        time.sleep(0.2)


def test_tour_register_a_client_then_see_it_in_followup_and_audit(dev_stack: DevStack) -> None:
    branch = {"Authorization": f"Bearer {dev_stack.token('branch_system', 'queue-01', 'BR-001')}"}
    rm = {"Authorization": f"Bearer {dev_stack.token('rm', 'rm-7')}"}
    auditor = {"Authorization": f"Bearer {dev_stack.token('auditor', 'aud-1')}"}
    event = {
        "type": "client.registered",
        # D-05b: the dev stack bounds occurred_at by the time of receipt
        "occurred_at": datetime.now(UTC).isoformat(),
        "client_id": "C-E2E-1",
        "branch_id": "BR-001",
        "channel": "walk_in",
        "actor": {"id": "staff-17", "role": "teller"},
        "data": {"client_type": "individual", "rm_id": "rm-7"},
    }
    with httpx.Client(timeout=10) as http:
        accepted = http.post(f"{dev_stack.url('intake')}/v1/events", json=event, headers=branch)
        assert accepted.status_code == 202, accepted.text
        event_id = accepted.json()["event_id"]

        def client_view() -> dict[str, object] | None:
            r = http.get(f"{dev_stack.url('followup')}/v1/clients/C-E2E-1", headers=rm)
            return r.json() if r.status_code == 200 else None

        view = wait_for(client_view)
        assert view["client_type"] == "individual"  # type: ignore[index]
        assert view["rm_id"] == "rm-7"  # type: ignore[index]

        def in_audit() -> bool:
            r = http.get(
                f"{dev_stack.url('audit')}/v1/audit/entries",
                params={"client_id": "C-E2E-1"},
                headers=auditor,
            )
            return r.status_code == 200 and any(
                e["event"]["event_id"] == event_id for e in r.json()["entries"]
            )

        wait_for(in_audit)
        verify = http.get(f"{dev_stack.url('audit')}/v1/audit/verify", headers=auditor)
        assert verify.status_code == 200
        assert verify.json()["ok"] is True
        for name in ("intake", "followup", "audit", "followup_worker", "audit_consumer"):
            assert http.get(f"{dev_stack.url(name)}/readyz").status_code == 200, name


def _child_running(root: int, needle: str) -> int | None:
    """The pid of a process under ``root`` whose command line contains ``needle``."""
    for pid in _pids_of_tree(root) - {root}:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if needle in cmdline and _running(pid):
            return pid
    return None


def test_a_killed_component_and_a_killed_broker_are_started_again(dev_stack: DevStack) -> None:
    root = dev_stack.process.pid
    consumer = _child_running(root, "run audit-consumer")
    broker = _child_running(root, "tansu")
    assert consumer is not None
    assert broker is not None
    os.kill(consumer, signal.SIGKILL)
    os.kill(broker, signal.SIGKILL)
    output = dev_stack.output

    wait_for(lambda: "↻ audit consumer restarted" in output.read_text(), within=60)
    wait_for(lambda: "↻ Kafka broker restarted" in output.read_text(), within=60)
    text = output.read_text()
    assert "✗ audit consumer stopped unexpectedly (killed by signal 9" in text
    assert "✗ Kafka broker stopped unexpectedly" in text
    assert _child_running(root, "run audit-consumer") not in (None, consumer)

    # the restarted broker has an empty log: an event accepted now still reaches the trail
    branch = {"Authorization": f"Bearer {dev_stack.token('branch_system', 'queue-01', 'BR-001')}"}
    auditor = {"Authorization": f"Bearer {dev_stack.token('auditor', 'aud-1')}"}
    event = {
        "event_id": str(uuid.uuid4()),  # retried until accepted: the same event, not a second one
        "type": "client.registered",
        "occurred_at": datetime.now(UTC).isoformat(),
        "client_id": "C-E2E-AFTER",
        "branch_id": "BR-001",
        "channel": "walk_in",
        "actor": {"id": "staff-17", "role": "teller"},
        "data": {"client_type": "individual", "rm_id": "rm-7"},
    }
    with httpx.Client(timeout=10) as http:

        def accepted() -> httpx.Response | None:
            try:
                r = http.post(f"{dev_stack.url('intake')}/v1/events", json=event, headers=branch)
            except httpx.HTTPError:
                return None
            return r if r.status_code == 202 else None

        event_id = wait_for(accepted, within=60).json()["event_id"]  # type: ignore[attr-defined]

        def in_audit() -> bool:
            r = http.get(
                f"{dev_stack.url('audit')}/v1/audit/entries",
                params={"client_id": "C-E2E-AFTER"},
                headers=auditor,
            )
            return r.status_code == 200 and any(
                e["event"]["event_id"] == event_id for e in r.json()["entries"]
            )

        wait_for(in_audit, within=90)


def test_ctrl_c_stops_everything_and_leaves_no_process(dev_stack: DevStack) -> None:
    tree = _pids_of_tree(dev_stack.process.pid)
    assert len(tree) >= 7  # dev, five components, tansu (PostgreSQL runs detached, below)
    pgdata = Path(dev_stack.env["BRANCHLINE_DATA_DIR"]) / "postgres" / "pgdata"
    postmaster = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
    dev_stack.process.send_signal(signal.SIGINT)
    code = dev_stack.process.wait(timeout=60)
    assert code == 0, f"exit code {code}:\n{dev_stack.output.read_text()}"
    time.sleep(0.5)
    alive = [pid for pid in tree | {postmaster} if _running(pid)]
    assert alive == [], f"left running: {alive}\n{dev_stack.output.read_text()}"
    assert "Stopped." in dev_stack.output.read_text()
