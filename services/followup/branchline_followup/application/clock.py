"""The service's clock: the system clock, plus in dev mode the durable offset of the test clock
(like Stripe's test clocks). Shared through PostgreSQL, so the API that moves it and the worker
whose timer runner reads it agree on the time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from branchline_shared.clock import Clock


class ClockOffsets(Protocol):
    """Where the test clock's offset is kept, shared by every process of the service."""

    async def read(self) -> timedelta: ...

    async def change(self, to: Callable[[timedelta], timedelta]) -> timedelta:
        """Store ``to(current)`` (one change at a time); ``to`` may refuse by raising."""
        ...


class FixedOffset:
    """No test clock (outside dev mode, and in unit tests): the offset stays zero."""

    async def read(self) -> timedelta:
        return timedelta(0)

    async def change(self, to: Callable[[timedelta], timedelta]) -> timedelta:
        return to(timedelta(0))


class ClockWouldGoBackwards(ValueError):
    """The test clock only moves forward (tasks and timers already saw the later time)."""

    def __init__(self, now: datetime, target: datetime) -> None:
        super().__init__(
            f"the clock is at {now.isoformat()}; {target.isoformat()} would move it backwards"
        )
        self.now = now
        self.target = target


class ServiceClock:
    def __init__(self, offsets: ClockOffsets, system: Clock, *, dev_mode: bool) -> None:
        self._offsets = offsets
        self._system = system
        self.dev_mode = dev_mode

    def system_now(self) -> datetime:
        """Real time (what ``recorded_at`` of an event states)."""
        return self._system.now()

    async def now(self) -> datetime:
        if not self.dev_mode:
            return self._system.now()
        return self._system.now() + await self._offsets.read()

    async def advance(self, by: timedelta) -> datetime:
        if by < timedelta(0):
            now = await self.now()
            raise ClockWouldGoBackwards(now, now + by)
        offset = await self._offsets.change(lambda current: current + by)
        return self._system.now() + offset

    async def set(self, target: datetime) -> datetime:
        def to_target(offset: timedelta) -> timedelta:
            system = self._system.now()
            if target < system + offset:
                raise ClockWouldGoBackwards(system + offset, target)
            return target - system

        await self._offsets.change(to_target)
        return target
