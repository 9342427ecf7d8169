"""A unit whose re-projection found its sales' products locked elsewhere runs again taking them
first (D-15, #12): :class:`ProductsFirst` (the integration race is
tests/integration/followup/test_followup_reprojection_product_lock.py)."""

from __future__ import annotations

import pytest

from branchline_followup.application.reprojection import ProductLocksWanted, ProductsFirst
from branchline_shared.kafka.consuming import is_conflict


async def test_a_rerun_locks_first_what_each_earlier_run_wanted() -> None:
    """D-15: each run gets the products every earlier run wanted, then its result."""
    asked: list[frozenset[str]] = []
    wanted = [{"P-2"}, {"P-1", "P-2"}]

    async def work(products: frozenset[str]) -> str:
        asked.append(products)
        if wanted:
            raise ProductLocksWanted(wanted.pop(0))
        return "applied"

    first = ProductsFirst()
    assert await first.run(work) == "applied"
    assert asked == [frozenset(), frozenset({"P-2"}), frozenset({"P-1", "P-2"})]
    assert first.products == frozenset({"P-1", "P-2"})


async def test_a_run_wanting_only_products_it_locked_first_is_a_conflict_of_the_caller() -> None:
    """D-15: no endless rerun: wanting nothing new raises, as a conflict (the caller's
    bounded retries decide)."""
    runs = 0

    async def work(products: frozenset[str]) -> str:
        nonlocal runs
        runs += 1
        raise ProductLocksWanted({"P-1"})

    with pytest.raises(ProductLocksWanted) as raised:
        await ProductsFirst().run(work)
    assert runs == 2
    assert is_conflict(raised.value)
    assert "P-1" not in str(raised.value)  # no product id in a message that may be logged
