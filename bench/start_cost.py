"""Does starting a Kafka client through ``start_or_close`` cost more than ``client.start()``
when nothing cuts the start short? (#12, Round 21)

Starts a tansu broker of its own, then for each pair times ``--starts`` producer starts made
directly and as many made through the helper (the order alternating between pairs), each
followed by a stop that is not timed. Prints every run's median start in milliseconds.

    python -m bench.start_cost --pairs 6 --starts 100
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaProducer  # noqa: E402

from bench.probe_stack import tansu_broker  # noqa: E402
from branchline_shared.kafka.starting import start_or_close  # noqa: E402


async def median_start_ms(bootstrap: str, starts: int, *, helper: bool) -> float:
    took = []
    for _ in range(starts):
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        began = time.perf_counter()
        if helper:
            await start_or_close(producer)
        else:
            await producer.start()
        took.append(time.perf_counter() - began)
        await producer.stop()
    return statistics.median(took) * 1000


async def main(pairs: int, starts: int) -> None:
    with tansu_broker() as broker:
        await median_start_ms(broker.bootstrap, 20, helper=False)  # warm up
        runs: dict[str, list[float]] = {"direct": [], "helper": []}
        for pair in range(pairs):
            order = ["direct", "helper"] if pair % 2 == 0 else ["helper", "direct"]
            for name in order:
                ms = await median_start_ms(broker.bootstrap, starts, helper=name == "helper")
                runs[name].append(ms)
                print(f"pair {pair + 1} {name}: median start {ms:.3f} ms", flush=True)
        favour = sum(h < d for h, d in zip(runs["helper"], runs["direct"], strict=True))
        for name, values in runs.items():
            print(f"{name}: median of runs {statistics.median(values):.3f} ms")
        print(f"pairs where the helper was faster: {favour}/{pairs}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--starts", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.pairs, args.starts))
