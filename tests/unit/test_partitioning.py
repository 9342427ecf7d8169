"""The producers' partitioner is aiokafka's default one, computed in less Python (#12): every
key must land in the partition aiokafka (and Kafka's Java client) puts it in, or a client's
events would be split across partitions and lose their order."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2
from hypothesis import given, settings
from hypothesis import strategies as st

from branchline_shared.kafka.partitioning import default_partition, murmur2
from branchline_shared.kafka.producer import make_producer
from branchline_shared.settings import CommonSettings

pytestmark = pytest.mark.unit


@given(st.binary(max_size=300))
@settings(max_examples=2000)
def test_murmur2_is_aiokafkas(key: bytes) -> None:
    assert murmur2(key) == aiokafka_murmur2(key)


def test_every_length_and_byte_value() -> None:
    rng = random.Random(12)
    for length in range(300):
        for _ in range(10):
            key = rng.randbytes(length)
            assert murmur2(key) == aiokafka_murmur2(key), key
    assert murmur2(bytes(range(256))) == aiokafka_murmur2(bytes(range(256)))
    assert murmur2(b"\xff" * 7) == aiokafka_murmur2(b"\xff" * 7)


def test_java_clients_vectors() -> None:
    # Kafka's UtilsTest.testMurmur2 (signed 32-bit in Java), as unsigned values.
    for key, expected in [
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ]:
        assert murmur2(key) == expected & 0xFFFFFFFF


@given(st.binary(max_size=64), st.integers(min_value=1, max_value=64))
def test_partitions_are_aiokafkas(key: bytes, count: int) -> None:
    partitions = list(range(count))
    available = partitions[: max(1, count // 2)]  # not every partition up: the key still decides
    assert default_partition(key, partitions, available) == DefaultPartitioner()(
        key, partitions, available
    )


def test_a_message_without_key_goes_to_an_available_partition() -> None:
    for _ in range(50):
        assert default_partition(None, [0, 1, 2, 3], [2]) == 2
        assert default_partition(None, [0, 1, 2, 3], []) in {0, 1, 2, 3}


async def test_the_producers_use_it() -> None:
    producer = make_producer(CommonSettings(), client_id="partitioning-test")
    try:
        assert producer._partitioner is default_partition  # never started: no broker needed
    finally:
        await producer.stop()
