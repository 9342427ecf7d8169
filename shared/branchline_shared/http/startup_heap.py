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

An intake API process also collects its young generation less often
(:func:`freeze_serving_heap`): 64 requests in flight, each holding its scope, its models and
its futures while it waits for its group's commit, swing the count of young objects past the
default 700 every few requests, so the collector ran every few events and walked whatever was
in flight (docs/performance.md, "Intake's single POST: the collector and the ids").

The followup worker does too (:func:`freeze_batch_heap`): it holds a fetched batch's
messages, events, tasks and pending writes until the batch commits, so at the default
threshold each young collection walked objects still in use, moved them to the older
generations, and those were walked again (docs/performance.md, "Followup worker: its young
objects collected less often"). So does the audit consumer, which holds a batch's messages,
events and rows until its append commits (Round 13).
"""

from __future__ import annotations

import gc

SERVING_YOUNG_THRESHOLD = 5_000
"""Net new container objects between two young collections in a serving intake process
(CPython's default is 700); the older generations keep their thresholds, so each is still
collected after as many younger collections as before. 20,000 cut the collector's time no
further at load and made each young collection's pause several times longer."""

BATCH_YOUNG_THRESHOLD = 20_000
"""The same for the followup worker, whose batches hold their objects until they commit: a
batch of 200 events holds fewer than this, so a young collection rarely falls inside one
(5,000 still did, several times per batch). A collection's longer pause (a few milliseconds)
is nothing beside a batch's time; what it can leave uncollected is at most this many objects."""


def freeze_startup_heap() -> None:
    """Collect the start-up's garbage, then freeze what is left (call when start-up is done)."""
    gc.collect()
    gc.freeze()


def _young_threshold(young: int) -> None:
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(young, middle, oldest)


def freeze_serving_heap() -> None:
    """:func:`freeze_startup_heap`, then the young generation collected after
    :data:`SERVING_YOUNG_THRESHOLD` new objects instead of 700 (intake's API, #12)."""
    freeze_startup_heap()
    _young_threshold(SERVING_YOUNG_THRESHOLD)


def freeze_batch_heap(young: int = BATCH_YOUNG_THRESHOLD) -> None:
    """:func:`freeze_startup_heap`, then the young generation collected after ``young``
    new objects instead of 700 (the followup worker and the audit consumer, #12; their settings
    ``followup_worker_gc_young_threshold`` and ``audit_consumer_gc_young_threshold`` default
    to :data:`BATCH_YOUNG_THRESHOLD`)."""
    freeze_startup_heap()
    _young_threshold(young)
