"""The own-copies probe measures what it says: its record batches are relayed first copies
that aiokafka's fetcher parses back whole and the worker skips, and its ``unread`` consumer
reads intake's topic alone (#12)."""

from __future__ import annotations

from aiokafka.consumer.fetcher import PartitionRecords
from aiokafka.record.memory_records import MemoryRecords
from aiokafka.structs import TopicPartition
from bench.probe_own_copies import _intake_only_arguments, _record_batches
from bench.profile_followup import workload
from bench.scratch import raw_messages

from branchline_followup.entrypoints.worker import is_first_own_copy
from branchline_shared.kafka.consuming import RawMessage


def test_the_record_batches_parse_back_as_first_own_copies_in_order() -> None:
    raws = raw_messages(workload("registrations", 6))
    data = _record_batches(raws, 5)
    tp = TopicPartition("followup.events", 0)
    parsed = list(PartitionRecords(tp, MemoryRecords(data), [], 0, None, None, True, 0))
    assert [r.offset for r in parsed] == list(range(len(raws)))
    assert [(r.key, r.value) for r in parsed] == [(m.key, m.value) for m in raws]
    made = [
        RawMessage(r.topic, r.partition, r.offset, r.key, r.value, list(r.headers)) for r in parsed
    ]
    assert all(is_first_own_copy(m) for m in made)


def test_the_unread_consumer_subscribes_to_the_first_topic_alone() -> None:
    given = {"topics": ("intake.events", "followup.events"), "name": "followup-worker"}
    assert _intake_only_arguments(given) == {
        "topics": ["intake.events"],
        "name": "followup-worker",
    }
    assert given["topics"] == ("intake.events", "followup.events")  # the worker's own, untouched
