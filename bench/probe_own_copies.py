"""What reading back followup's own first copies costs the followup worker (#12).

The worker consumes the intake topic and followup's own topic, where its relay publishes what
followup's store recorded: on the benchmark's load one task creation per registration, half of
the records the worker fetches. Each is skipped before decoding (``is_first_own_copy``: its
headers); what is left is aiokafka's work on the record and the consumer's per-round work
(fetches and offset commits naming the topic's partitions). Two measures:

``records``: no broker; a record batch of relayed task-creation copies (the relay's headers,
``source`` = ``followup``) parsed as aiokafka's fetcher parses a fetch's records
(``PartitionRecords``: the batch's CRC, the C record parser, a ``ConsumerRecord`` each), then
made into the consumer's ``RawMessage`` and judged by ``is_first_own_copy``. CPU time
(``time.process_time``), the minimum of ``--rounds`` rounds, per record.

``steady``: :mod:`bench.followup_steady` (the worker as it runs, in this process, through the
tansu broker) with its consumer subscribed as it is (``--own-copies read``) or to the intake
topic alone (``--own-copies unread``: the probe's patch, never the product's behaviour: a
re-queued copy would then never be applied). The difference of the process's CPU per event
is what reading the copies back costs, all of it: records, fetches, commits. The other
options are followup_steady's; run it under both stack locks.

    python -m bench.probe_own_copies records [--per-batch 1 8] [--rounds 7]
    python -m bench.probe_own_copies steady --own-copies read|unread [followup_steady options]
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.profile_followup import workload  # noqa: E402
from bench.scratch import raw_messages  # noqa: E402
from branchline_followup.entrypoints import worker as worker_module  # noqa: E402
from branchline_followup.entrypoints.worker import is_first_own_copy  # noqa: E402
from branchline_shared.kafka.consuming import BatchConsumer, RawMessage  # noqa: E402


def _record_batches(raws: list[RawMessage], per_batch: int) -> bytes:
    """``raws`` as the relay's copies in record batches of ``per_batch`` (v2, uncompressed),
    their offsets consecutive from 0."""
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    chunks: list[bytes] = []
    now_ms = int(time.time() * 1000)
    for first in range(0, len(raws), per_batch):
        builder = DefaultRecordBatchBuilder(
            magic=2,
            compression_type=0,
            is_transactional=0,
            producer_id=-1,
            producer_epoch=-1,
            base_sequence=-1,
            batch_size=1 << 24,
        )
        for n, raw in enumerate(raws[first : first + per_batch]):
            headers = [(k, v) for k, v in raw.headers if k != "source"] + [("source", b"followup")]
            builder.append(n, timestamp=now_ms, key=raw.key, value=raw.value, headers=headers)
        built = bytes(builder.build())
        chunks.append(struct.pack(">q", first) + built[8:])  # the batch's base offset
    return b"".join(chunks)


def records(args: argparse.Namespace) -> None:
    from aiokafka.consumer.fetcher import PartitionRecords
    from aiokafka.record.memory_records import MemoryRecords
    from aiokafka.structs import TopicPartition

    # the task creations' size is about the registrations' (each a short envelope)
    raws = raw_messages(workload("registrations", 200))
    tp = TopicPartition("followup.events", 0)
    for per_batch in args.per_batch:
        data = _record_batches(raws, per_batch)
        parse = whole = float("inf")
        for _ in range(args.rounds):
            t0 = time.process_time()
            for _ in range(20):
                parsed = list(PartitionRecords(tp, MemoryRecords(data), [], 0, None, None, True, 0))
            t1 = time.process_time()
            for _ in range(20):
                parsed = list(PartitionRecords(tp, MemoryRecords(data), [], 0, None, None, True, 0))
                made = [
                    RawMessage(
                        r.topic, r.partition, r.offset, r.key, r.value, list(r.headers or ())
                    )
                    for r in parsed
                ]
                left = [m for m in made if not is_first_own_copy(m)]
            t2 = time.process_time()
            parse = min(parse, (t1 - t0) / 20 / len(raws))
            whole = min(whole, (t2 - t1) / 20 / len(raws))
        assert not left  # every copy skipped
        assert len(parsed) == len(raws)
        print(
            f"relay batches of {per_batch}: aiokafka's parse {1e6 * parse:.2f} µs per record; "
            f"with the consumer's RawMessage and the skip {1e6 * whole:.2f} µs per record; "
            f"load average {os.getloadavg()[0]:.2f}"
        )


def _intake_only_arguments(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The worker's consumer's arguments with the first of its topics (intake's) alone."""
    return {**kwargs, "topics": list(kwargs["topics"])[:1]}


def _intake_only(**kwargs: Any) -> BatchConsumer:
    """The worker's consumer subscribed to the first of its topics (intake's) alone."""
    return BatchConsumer(**_intake_only_arguments(kwargs))


def steady(own_copies: str, rest: list[str]) -> int:
    from bench import followup_steady

    sys.argv = ["bench.followup_steady", *rest]
    print(f"own copies {own_copies}")
    if own_copies == "read":
        return followup_steady.main()
    with mock.patch.object(worker_module, "BatchConsumer", _intake_only):
        return followup_steady.main()


def main() -> int:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="mode", required=True)
    rec = sub.add_parser("records")
    rec.add_argument("--per-batch", type=int, nargs="+", default=[1, 8])
    rec.add_argument("--rounds", type=int, default=7)
    st = sub.add_parser("steady")
    st.add_argument("--own-copies", choices=("read", "unread"), required=True)
    args, rest = parser.parse_known_args()
    if args.mode == "records":
        records(args)
        return 0
    return steady(args.own_copies, rest)


if __name__ == "__main__":
    sys.exit(main())
