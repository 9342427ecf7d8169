"""What the standalone measuring scripts of bench/ share around their measure: a scratch
folder removed afterwards, an embedded PostgreSQL in it, settings that point at it, and the
Kafka messages a list of events would arrive as (the scripts hand them to the consumers' own
handling code, no broker in between)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Mapping
from pathlib import Path
from typing import Any

from branchline_shared.embedded.ports import free_port
from branchline_shared.embedded.postgres import EmbeddedPostgres, prepare_runtime_dir
from branchline_shared.events.envelope import RecordedEvent
from branchline_shared.kafka.consuming import RawMessage
from branchline_shared.kafka.wire import event_headers

UNUSED_BROKER = "127.0.0.1:9"
"""A broker address nothing connects to: the scripts that name it hand messages over directly."""


def run_in_scratch(
    measure: Callable[[argparse.Namespace, Path], Coroutine[Any, Any, None]],
    args: argparse.Namespace,
    prefix: str,
) -> int:
    """``measure(args, folder)`` in a fresh scratch folder (under ``$BENCH_TMP`` when set),
    removed whatever happens; the script's exit status."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir=os.environ.get("BENCH_TMP")))
    try:
        asyncio.run(measure(args, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


@contextlib.asynccontextmanager
async def embedded_postgres(
    base: Path,
    broker: str = UNUSED_BROKER,
    server_settings: Mapping[str, str] | None = None,
    **overrides: Any,
) -> AsyncIterator[tuple[EmbeddedPostgres, Any]]:
    """An embedded PostgreSQL in ``base`` (``server_settings`` its ``-c`` settings) and the
    test suite's settings for it (``broker`` as the Kafka address, ``overrides`` on top);
    stopped at the end of the block. The probes
    start it through ``bench.probe_stack.probe_stack``."""
    from tests.support.stack import Infra, make_settings

    prepare_runtime_dir(base)
    server = EmbeddedPostgres(base / "pg", free_port(), extra_settings=dict(server_settings or {}))
    try:
        # inside: a start that failed part-way (pg_ctl's wait ran out with the server still
        # coming up) stops what it started instead of leaving it running (#12)
        server.start()
        yield (
            server,
            make_settings(Infra(server.url("postgres"), broker), base / "data", **overrides),
        )
    finally:
        server.stop(mode="immediate")


def raw_messages(events: Iterable[RecordedEvent], topic: str = "intake.events") -> list[RawMessage]:
    """``events`` as one partition of ``topic`` delivers them: keyed by subject, with the
    headers the relay sets (store position = offset + 1)."""
    return [
        RawMessage(
            topic,
            0,
            n,
            e.subject_id.encode(),
            e.model_dump_json().encode(),
            event_headers(e, n + 1),
        )
        for n, e in enumerate(events)
    ]
