"""A stop with the broker down after the relay saw it fail: the drain ends at once instead of
retrying until its bound (``OutboxRelay.drain_given_up``, #12, Round 33). A stop while a round
still waits on a broker just gone (no failure seen yet) ends once the round has waited the
stop's patience and the broker answers no metadata request within it either (Round 34): before,
it waited for the round's sends to expire (the producer's request timeout, 10 s).

Before, a drain asked for while the relay retried (a round failed: its sends expired with the
broker down) backed off and retried until ``shutdown_flush_timeout_s``; the rows stay in the
outbox either way and the next relay publishes them. Here the drain's bound is set far above
the stop's, so a stop that waited for it fails the bound check; the rows are left unmarked, and
a service started once the broker is back publishes them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from tests.integration.test_stop_with_the_broker_down import (
    FLUSH_S,
    SERVICES,
    stop_with_the_broker_gone,
)
from tests.support.held_broker import HeldBroker
from tests.support.stack import Infra, eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

DRAIN_S = 60.0
"""The relay's drain bound (``shutdown_flush_timeout_s``), far above the stop's."""
STOP_S = 20.0
"""What the stop may take (the pools' and key pool's closes, a round's cancel): a safety net
for a loaded machine (5 s before Round 34's #12), far under the old drain's retries until its
bound (``DRAIN_S``)."""


FAIL_WITHIN_MS = 2_000
"""The producers' request timeout in the test that waits for a round to fail: what it proves
is the drain after a failure, not when the failure comes; at the default (10 s) that wait was
most of the test (#12, CI time)."""


def failed_rounds(store: str) -> float:
    found = REGISTRY.get_sample_value("branchline_outbox_publish_failures_total", {"store": store})
    return found or 0.0


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_a_drain_that_saw_the_broker_fail_ends_at_once_and_loses_nothing(
    infra: Infra, tmp_path: Path, service: str
) -> None:
    async def a_round_failed(_: HeldBroker) -> None:
        failures = failed_rounds(service)

        async def failed() -> bool:
            return failed_rounds(service) > failures

        # a round's sends expire after the producer's request timeout
        await eventually(failed, within=60, interval=0.1)

    took = await stop_with_the_broker_gone(
        infra,
        tmp_path,
        service,
        drain_s=DRAIN_S,
        while_gone=a_round_failed,
        request_timeout_ms=FAIL_WITHIN_MS,
    )
    assert took < STOP_S, (
        f"the stop took {took:.1f} s (drain bound {DRAIN_S} s, flush bound {FLUSH_S} s)"
    )


ROUND_STOP_S = 10.0
"""What a stop during a round waiting on the gone broker may take: the round's patience and
the probe's (1 s each, ``relay.STOP_PATIENCE_S``) and the closes, ~1 s measured; 4 s before
Round 34's #12, widened for a loaded machine. The old drain waited for the round's sends to
expire after the producer's retries: 19.0 s measured (docs/performance.md, Round 34)."""


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_a_stop_while_a_round_waits_on_a_broker_just_gone_ends_promptly_and_loses_nothing(
    infra: Infra, tmp_path: Path, service: str
) -> None:
    failures = failed_rounds(service)

    async def a_round_waits_for_the_broker(broker: HeldBroker) -> None:
        async with asyncio.timeout(30):
            await broker.held_one.wait()
        await asyncio.sleep(1.0)  # a round read them; its sends wait for the broker
        assert failed_rounds(service) == failures  # no failure seen yet: the round in flight

    took = await stop_with_the_broker_gone(
        infra, tmp_path, service, drain_s=DRAIN_S, while_gone=a_round_waits_for_the_broker
    )
    assert took < ROUND_STOP_S, (
        f"the stop took {took:.1f} s (drain bound {DRAIN_S} s, flush bound {FLUSH_S} s)"
    )
