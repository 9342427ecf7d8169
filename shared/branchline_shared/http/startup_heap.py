"""The long-lived heap of a process, frozen once its start-up is complete (#12).

What a Branchline process loads at start-up (modules, settings, pydantic models, FastAPI's
routes, the Kafka clients, the pools) lives until the process ends, yet every gen-2 collection
walks it again: profiling showed ~5 % of the followup worker's samples in gen-2 collections of
it. ``gc.freeze`` moves every object tracked so far to the permanent generation, which the
collector no longer walks; in the bench harness the worker's Python CPU per event went from
~0.34 to ~0.29 ms (docs/performance.md, "Frozen start-up heap").

Frozen objects are still freed by reference counting; only a reference cycle among them would
never be collected, so the start-up's own garbage is collected first and then the rest frozen.
Called once per process by the entrypoints (``branchline run <component>``), never by a
library function: a test process must not freeze its heap.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> None:
    """Collect the start-up's garbage, then freeze what is left (call when start-up is done)."""
    gc.collect()
    gc.freeze()
