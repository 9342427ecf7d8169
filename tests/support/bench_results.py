"""A ``bench.run`` result as ``render_markdown`` reads it, for the benchmark's report tests."""

from __future__ import annotations

from typing import Any


def bench_result(
    measures: dict[str, Any], *, profile: str = "smoke", steady: dict[str, Any] | None = None
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "profile": profile,
        "repeat": 2,
        "machine": {
            "started_at": "t",
            "commit": "c",
            "cores": 2,
            "cpu": "x",
            "memory_gib": 4,
            "load_average_at_start": [1.0],
            "load_average_at_end": [1.0],
            "python": "3.11",
            "versions": {},
        },
        "measures": measures,
    }
    if steady is not None:
        result["steady_rate"] = steady
    return result
