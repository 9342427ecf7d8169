"""CPU per message of choosing its partition: aiokafka's default partitioner against the
producers' own (``branchline_shared.kafka.partitioning``, the same partitions), alternated.

    python -m bench.partition_cost [--keys 20000] [--pairs 5]

The keys are the benchmark's subject ids (``C-<run>-<i>``), each hashed once, as the outbox
relay hashes each message's key; 4 partitions, as the benchmark's topics.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiokafka.partitioner import DefaultPartitioner  # noqa: E402

from branchline_shared.kafka.partitioning import default_partition  # noqa: E402

Partitioner = Callable[[bytes | None, Sequence[int], Sequence[int]], int]


def per_key_us(partitioner: Partitioner, keys: list[bytes]) -> float:
    partitions = [0, 1, 2, 3]
    started = time.thread_time()
    for key in keys:
        partitioner(key, partitions, partitions)
    return 1e6 * (time.thread_time() - started) / len(keys)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=20000)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    run = uuid.uuid4().hex[:8]
    keys = [f"C-{run}-{i}".encode() for i in range(args.keys)]
    before: list[float] = []
    after: list[float] = []
    aiokafka_default: Partitioner = DefaultPartitioner()
    for _ in range(args.pairs):
        before.append(per_key_us(aiokafka_default, keys))
        after.append(per_key_us(default_partition, keys))
    for name, figures in (("aiokafka DefaultPartitioner", before), ("default_partition", after)):
        print(
            f"{name}: {', '.join(f'{f:.2f}' for f in figures)} µs per key "
            f"(median {statistics.median(figures):.2f})"
        )
    print(f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
