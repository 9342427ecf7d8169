"""The scheduled erasure job: a background task of the worker process that shreds, every
``privacy_shred_interval_s``, the clients whose erasure is due (D-04, D-11)."""

from __future__ import annotations

import asyncio
import logging

from branchline_followup.adapters.legal_holds import LegalHolds
from branchline_followup.application.recording import FollowupContext
from branchline_followup.application.shredding import shred_due
from branchline_followup.domain.erasure import RetentionRule
from branchline_shared.kafka.consuming import is_transient

log = logging.getLogger(__name__)


async def run_shred_loop(
    ctx: FollowupContext, rule: RetentionRule, holds: LegalHolds, *, interval_s: float
) -> None:
    """Run until cancelled; a failed round is logged (by its type, never its values) and
    retried sooner."""
    if ctx.keys is None:
        raise RuntimeError("the erasure job needs the key store")
    while True:
        delay = interval_s
        try:
            done = [s for s in await shred_due(ctx, ctx.keys, rule, holds) if s.shredded]
            if done:
                log.info("personal data shredded", extra={"clients": len(done)})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            kind = "transient" if is_transient(exc) else "unexpected"
            log.warning(
                "erasure round failed; retrying",
                extra={"error_type": type(exc).__name__, "failure": kind},
            )
            delay = min(interval_s, 30.0)
        await asyncio.sleep(delay)
