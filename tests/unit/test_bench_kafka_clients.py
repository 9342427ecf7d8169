"""bench/'s Kafka consumers and producers start and stop through the product's functions
(``branchline_shared.kafka.starting``: ``start_or_close``, ``closed``), as the services' do:
a start cut short closes what it opened, a stop ended short is finished (#12). The producers
were moved in Round 29 ("testedges"), the consumers in Round 30. ``bench/start_cost.py``
calls ``client.start()`` directly on purpose: it measures what ``start_or_close`` costs over
it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from tests.support.source_calls import called_name

pytestmark = pytest.mark.unit

BENCH = Path(__file__).resolve().parents[2] / "bench"
DIRECT_ON_PURPOSE = frozenset({"start_cost.py"})
CLIENTS = frozenset({"AIOKafkaConsumer", "AIOKafkaProducer", "make_producer"})
"""What makes a Kafka consumer or producer (aiokafka's classes, the product's factory)."""

MODULES = sorted(
    str(path.relative_to(BENCH))
    for path in BENCH.rglob("*.py")
    if str(path.relative_to(BENCH)) not in DIRECT_ON_PURPOSE
)


def _direct_starts_and_stops(tree: ast.AST) -> list[str]:
    """``name.start()`` / ``name.stop()`` on a name the module binds to a new Kafka client."""
    clients: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Assign | ast.AnnAssign)
            and isinstance(node.value, ast.Call)
            and called_name(node.value) in CLIENTS
        ):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            clients.update(t.id for t in targets if isinstance(t, ast.Name))
    return [
        f"{node.func.value.id}.{node.func.attr}() at line {node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in {"start", "stop"}
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id in clients
    ]


def test_the_bench_has_kafka_clients_to_look_at() -> None:
    """The check below sees the bench's clients (it would pass vacuously otherwise)."""
    made = [
        name
        for name in MODULES
        for node in ast.walk(ast.parse((BENCH / name).read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and called_name(node) == "AIOKafkaConsumer"
    ]
    assert len(made) >= 3, made


@pytest.mark.parametrize("name", MODULES)
def test_a_bench_kafka_client_starts_and_stops_through_the_products_functions(
    name: str,
) -> None:
    tree = ast.parse((BENCH / name).read_text(encoding="utf-8"))
    assert _direct_starts_and_stops(tree) == [], (
        f"bench/{name}: use start_or_close / closed (branchline_shared.kafka.starting)"
    )


def test_start_cost_still_starts_its_producer_directly() -> None:
    """The exemption names a file that still needs it."""
    tree = ast.parse((BENCH / "start_cost.py").read_text(encoding="utf-8"))
    assert _direct_starts_and_stops(tree), "start_cost.py: drop it from DIRECT_ON_PURPOSE"


SUPPORT = BENCH.parent / "tests" / "support"
SUPPORT_DIRECT_ON_PURPOSE = frozenset({"joining.py"})
"""``joining.py``'s plain members and its dead-letter producer stay on aiokafka's own
``start()``/``stop()``: the stop-while-joining test holds a group in a rebalance through them and
measures the product's consumer against plain clients."""
SUPPORT_HELD = sorted(
    path.name for path in SUPPORT.glob("*.py") if path.name not in SUPPORT_DIRECT_ON_PURPOSE
)
"""tests/support modules held to it too: Round 31 moved ``published.py``'s relay producer,
Round 32 ``consumers.py``'s audit dead-letter producer and ``kafka.py``'s topic reader."""


@pytest.mark.parametrize("name", SUPPORT_HELD)
def test_a_support_kafka_client_starts_and_stops_through_the_products_functions(
    name: str,
) -> None:
    tree = ast.parse((SUPPORT / name).read_text(encoding="utf-8"))
    assert _direct_starts_and_stops(tree) == [], (
        f"tests/support/{name}: use start_or_close / closed (branchline_shared.kafka.starting)"
    )


def test_the_support_modules_make_kafka_clients_to_look_at() -> None:
    """The check above sees support modules that make Kafka clients (not vacuous)."""
    making = [
        name
        for name in SUPPORT_HELD
        if any(
            isinstance(node, ast.Call) and called_name(node) in CLIENTS
            for node in ast.walk(ast.parse((SUPPORT / name).read_text(encoding="utf-8")))
        )
    ]
    assert {"consumers.py", "kafka.py", "published.py"} <= set(making), making


def test_joining_still_starts_its_clients_directly() -> None:
    """The exemption names a file that still needs it."""
    tree = ast.parse((SUPPORT / "joining.py").read_text(encoding="utf-8"))
    assert _direct_starts_and_stops(tree), "joining.py: drop it from SUPPORT_DIRECT_ON_PURPOSE"


def _wait_fors(tree: ast.AST) -> list[int]:
    """The lines calling ``asyncio.wait_for`` (or a bare ``wait_for`` imported from asyncio)."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (
                isinstance(node.func, ast.Attribute)
                and node.func.attr == "wait_for"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "asyncio"
            )
            or (isinstance(node.func, ast.Name) and node.func.id == "wait_for")
        )
    ]


@pytest.mark.parametrize(
    "name",
    sorted(str(path.relative_to(BENCH)) for path in BENCH.rglob("*.py")),
)
def test_a_bench_probe_bounds_its_waits_with_asyncio_timeout(name: str) -> None:
    """The product's rule (``asyncio.timeout``, not ``asyncio.wait_for``) holds in bench/ too:
    the same cancellation edges as the code it measures (#12)."""
    tree = ast.parse((BENCH / name).read_text(encoding="utf-8"))
    assert _wait_fors(tree) == [], f"bench/{name}: use asyncio.timeout, not wait_for"
