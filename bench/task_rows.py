"""A stored task's row read into a task, with and without validating it again (#12,
docs/performance.md, Round 29 "workerkeys"): ``FollowupTask.model_validate`` of the row's
values (before) against :func:`~branchline_followup.domain.tasks.task_of_values` (what
``task_from_row`` calls now), on rows as asyncpg reads them (its own ``uuid.UUID`` subclass,
instants in UTC, the enums' text), open and closed ones mixed. Every pair of results is
compared (equal, with the same fields set) before anything is timed. Prints the CPU time
(``time.process_time``) per row of each side in ABBA order, ``--pairs`` times.

    python -m bench.task_rows [--rows 20000] [--pairs 4]
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from asyncpg.pgproto import pgproto  # noqa: E402

from branchline_followup.adapters.read_models import TASK_COLUMNS, task_row  # noqa: E402
from branchline_followup.domain.tasks import (  # noqa: E402
    FollowupTask,
    new_task,
    task_of_values,
)
from branchline_followup.domain.vocabulary import RULE_OF_KIND, TaskStatus  # noqa: E402

_START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _driver_id(value: uuid.UUID | None) -> Any:
    return None if value is None else pgproto.UUID(str(value))


def rows(count: int) -> list[dict[str, Any]]:
    """``count`` rows as the driver reads ``fu_tasks``: every third one closed."""
    kinds = list(RULE_OF_KIND)
    made: list[dict[str, Any]] = []
    for i in range(count):
        task = new_task(
            kind=kinds[i % len(kinds)],
            source_event_id=uuid.UUID(int=i + 1),
            client_id=f"C-{i % 500}",
            branch_id="BR-001" if i % 4 else None,
            assignee=f"rm-{i % 7}",
            subject=f"visit:V-{i}",
            opened_at=_START + timedelta(minutes=i),
            due_at=_START + timedelta(days=2, minutes=i),
            deadline_profile="default",
        )
        if i % 3 == 0:
            task = task.model_copy(
                update={
                    "status": TaskStatus.DONE,
                    "closed_at": _START + timedelta(days=1, minutes=i),
                    "closed_by_event_id": uuid.UUID(int=10**6 + i),
                    "close_reason": "visited",
                }
            )
        values = dict(zip(TASK_COLUMNS, task_row(task), strict=True))
        for column in ("id", "source_event_id", "closed_by_event_id"):
            values[column] = _driver_id(values[column])
        made.append(values)
    return made


def _validated(values: dict[str, Any]) -> FollowupTask:
    return FollowupTask.model_validate(values)


def _per_row(read: Callable[[dict[str, Any]], FollowupTask], made: list[dict[str, Any]]) -> float:
    started = time.process_time()
    for values in made:
        read(values)
    return (time.process_time() - started) / len(made) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--pairs", type=int, default=4)
    args = parser.parse_args()
    made = rows(args.rows)
    for values in made:
        old, new = _validated(values), task_of_values(values)
        same_types = [type(v) for v in old.__dict__.values()] == [
            type(v) for v in new.__dict__.values()
        ]
        if old != new or old.model_fields_set != new.model_fields_set or not same_types:
            raise SystemExit(f"task_of_values differs from validation for {values}")
    sides = {"validated": _validated, "task_of_values": task_of_values}
    times: dict[str, list[float]] = {name: [] for name in sides}
    order = ["validated", "task_of_values", "task_of_values", "validated"]
    for _ in range(args.pairs):
        for name in order:
            times[name].append(_per_row(sides[name], made))
    for name, taken in times.items():
        print(
            f"{name}: {min(taken):.2f}..{max(taken):.2f} µs/row "
            f"({len(taken)} passes of {len(made)} rows, all pairs equal)"
        )


if __name__ == "__main__":
    main()
