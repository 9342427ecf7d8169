"""The test clock (dev mode only: the router is mounted only then, so elsewhere it is 404).

``POST /v1/dev/clock`` moves the service's durable clock forward and fires, before it answers,
every timer due by the new time (an admin watching a task go overdue and escalate)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from branchline_followup.application.clock import ClockWouldGoBackwards
from branchline_followup.application.timers import fire_all_due
from branchline_followup.entrypoints.http_deps import ContextDep
from branchline_followup.entrypoints.problems import problem_of
from branchline_shared.events.bounded import Instant
from branchline_shared.http.auth import Principal, Role, require_roles

Admin = Annotated[Principal, require_roles(Role.ADMIN)]

router = APIRouter(prefix="/v1/dev", tags=["dev"])


class ClockView(BaseModel):
    now: datetime


class ClockMoved(ClockView):
    timers_fired: int
    """Events recorded by the timers that came due."""


class ClockChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    advance_seconds: Annotated[float, Field(ge=0, le=10 * 365 * 24 * 3600)] | None = None
    set: Instant | None = None

    @model_validator(mode="after")
    def _one_of(self) -> ClockChange:
        if (self.advance_seconds is None) == (self.set is None):
            raise ValueError("give exactly one of advance_seconds and set")
        return self


@router.get("/clock", response_model=ClockView, summary="The service's (test) clock")
async def get_clock(ctx: ContextDep, _: Admin) -> ClockView:
    return ClockView(now=await ctx.clock.now())


@router.post("/clock", response_model=ClockMoved, summary="Move the test clock forward")
async def move_clock(body: ClockChange, ctx: ContextDep, _: Admin) -> ClockMoved:
    try:
        if body.set is not None:
            now = await ctx.clock.set(body.set)
        else:
            now = await ctx.clock.advance(timedelta(seconds=body.advance_seconds or 0))
    except ClockWouldGoBackwards as exc:
        raise problem_of(exc) from None
    fired = await fire_all_due(ctx, now)
    return ClockMoved(now=now, timers_fired=fired)
