"""The timer runner: a background task of the worker process that fires due timers (and makes
the clients' due stage changes by time) with the service's clock. Safe with any number of
replicas (timers and clients are claimed with SKIP LOCKED)."""

from __future__ import annotations

import asyncio
import logging

from branchline_followup.application.recording import FollowupContext
from branchline_followup.application.timers import run_due_timers
from branchline_shared.kafka.consuming import is_conflict, is_transient

log = logging.getLogger(__name__)


async def run_timer_loop(ctx: FollowupContext, *, interval_s: float, batch_size: int) -> None:
    """Run until cancelled."""
    backoff = interval_s
    while True:
        try:
            now = await ctx.clock.now()
            result = await run_due_timers(ctx, now, batch_size=batch_size)
            if result.fired or result.stage_changes:
                log.info(
                    "timers fired",
                    extra={
                        "fired": result.fired,
                        "stage_changes": result.stage_changes,
                        "busy": result.busy,
                    },
                )
            backoff = interval_s
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The runner must outlive a database restart or one bad row: log, back off, retry.
            if is_transient(exc) or is_conflict(exc):  # a lost race: the next round reads again
                log.warning("timer round failed; retrying", extra={"error": repr(exc)})
            else:
                log.exception("timer round failed")
            backoff = min(backoff * 2, 30.0)
        await asyncio.sleep(backoff)
