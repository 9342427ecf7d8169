"""A verifying process of the API's verify ends with the API process that asked for it (#12,
docs/audit.md "The API's verify"): an API process killed mid-verify runs no clean-up, and its
verifying processes would otherwise read on, for nobody, beside the next verify its freed slot
lets start (the limit across processes, ``test_audit_verify_limit.py``)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

needs_pidfds = pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="pidfds: Linux 5.3+")

_WATCHING = (
    "import sys, time\n"
    "from branchline_audit.adapters.segments import _end_with\n"
    "_end_with(int(sys.argv[1]))\n"
    "print('watching', flush=True)\n"
    "time.sleep(50)\n"  # a range read on for nobody
)


def _watcher(api: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WATCHING, str(api)], stdout=subprocess.PIPE, text=True
    )


@needs_pidfds
def test_a_verifying_process_ends_once_its_api_process_has_ended() -> None:
    api = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(50)"])
    watcher = _watcher(api.pid)
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline().strip() == "watching"
        assert watcher.poll() is None
        api.kill()  # as SIGKILL or the OOM killer would: nothing runs in it
        api.wait(10)
        assert watcher.wait(10) == 1
    finally:
        for process in (api, watcher):
            if process.poll() is None:
                process.kill()
                process.wait(10)
        assert watcher.stdout is not None
        watcher.stdout.close()


@needs_pidfds
def test_one_whose_api_process_is_already_gone_ends_at_once() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(10)
    watcher = _watcher(gone.pid)
    try:
        assert watcher.wait(10) == 1
        assert watcher.stdout is not None
        assert watcher.stdout.read() == ""
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(10)
        assert watcher.stdout is not None
        watcher.stdout.close()


# Without pidfds (not Linux 5.3+, or refused by a seccomp filter): the lifeline alone, a pipe
# whose only write end the API process holds. Forced here with ``pidfds=False``.
_WATCHING_LIFELINE = (
    "import sys, time\n"
    "from multiprocessing.connection import Connection\n"
    "from branchline_audit.adapters.segments import _end_with\n"
    "_end_with(int(sys.argv[1]), Connection(int(sys.argv[2]), writable=False), pidfds=False)\n"
    "print('watching', flush=True)\n"
    "time.sleep(50)\n"
)


def _lifeline_watcher(api: int, read_end: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WATCHING_LIFELINE, str(api), str(read_end)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        pass_fds=(read_end,),
    )


def test_without_pidfds_a_verifying_process_ends_once_its_api_process_has_ended() -> None:
    read_end, write_end = os.pipe()
    api = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(50)"], pass_fds=(write_end,)
    )
    os.close(write_end)  # the API process's copy is the only one left
    watcher = _lifeline_watcher(api.pid, read_end)
    os.close(read_end)
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline().strip() == "watching"
        assert watcher.poll() is None
        api.kill()
        api.wait(10)
        assert watcher.wait(10) == 1
    finally:
        for process in (api, watcher):
            if process.poll() is None:
                process.kill()
                process.wait(10)
        for stream in (watcher.stdout, watcher.stderr):
            assert stream is not None
            stream.close()


def test_without_pidfds_one_whose_api_process_is_already_gone_ends_at_once() -> None:
    read_end, write_end = os.pipe()
    gone = subprocess.Popen([sys.executable, "-c", "pass"], pass_fds=(write_end,))
    os.close(write_end)
    gone.wait(10)
    watcher = _lifeline_watcher(gone.pid, read_end)
    os.close(read_end)
    try:
        assert watcher.wait(10) == 1
        assert watcher.stderr is not None
        assert watcher.stderr.read() == ""  # ended by the watch, not by an error
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait(10)
        for stream in (watcher.stdout, watcher.stderr):
            assert stream is not None
            stream.close()
