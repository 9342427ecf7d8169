"""Time an idle ``branchline dev``: its start (to "Branchline is up.") and its stop (SIGINT to
exit), on free ports and a fresh data folder each run (#12, docs/performance.md, "The dev
stack's idle stop and start"). A timing, not one of the benchmark's measurements.

    flock /work/coord/stack.lock.0 .venv/bin/python -m bench.probe_dev_stop --runs 3

The code timed is whatever the interpreter imports: another checkout's by ``PYTHONPATH`` (its
``cli``, ``services/*`` and ``shared`` folders), as the ABBA in the docs did for the old side.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from branchline_shared.embedded.ports import free_port

PORTS = ("intake", "followup", "audit", "followup_worker", "audit_consumer", "broker", "postgres")


def one_run(idle_s: float) -> tuple[float, float]:
    """(start, stop) in seconds of one idle ``branchline dev``."""
    root = Path(tempfile.mkdtemp(prefix="dev-stop-"))
    env = dict(os.environ)
    env.update({f"BRANCHLINE_{name.upper()}_PORT": str(free_port()) for name in PORTS})
    env["BRANCHLINE_DATA_DIR"] = str(root / "data")
    env.pop("BRANCHLINE_JWT_SECRET", None)
    output = root / "dev.out"
    began = time.monotonic()
    with output.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "branchline_cli.main", "dev"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        while "Branchline is up." not in output.read_text():
            if process.poll() is not None:
                raise RuntimeError(f"branchline dev exited:\n{output.read_text()}")
            time.sleep(0.02)
        up = time.monotonic() - began
        time.sleep(idle_s)
        asked = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
        return up, time.monotonic() - asked
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--idle-s", type=float, default=3.0, help="up this long before SIGINT")
    args = parser.parse_args()
    for _ in range(args.runs):
        start, stop = one_run(args.idle_s)
        print(f"start={start:.2f}s stop={stop:.2f}s", flush=True)


if __name__ == "__main__":
    main()
