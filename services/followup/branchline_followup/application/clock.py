"""The service's clock: the system clock, plus in dev mode the durable offset of the test clock
(like Stripe's test clocks). Shared through PostgreSQL, so the API that moves it and the worker
whose timer runner reads it agree on the time."""

from __future__ import annotations

from datetime import datetime, timedelta

from branchline_followup.adapters import clock_store
from branchline_shared.clock import Clock
from branchline_shared.postgres.pool import PgPool


class ClockWouldGoBackwards(ValueError):
    """The test clock only moves forward (tasks and timers already saw the later time)."""

    def __init__(self, now: datetime, target: datetime) -> None:
        super().__init__(
            f"the clock is at {now.isoformat()}; {target.isoformat()} would move it backwards"
        )
        self.now = now
        self.target = target


class ServiceClock:
    def __init__(self, pool: PgPool, system: Clock, *, dev_mode: bool) -> None:
        self._pool = pool
        self._system = system
        self.dev_mode = dev_mode

    def system_now(self) -> datetime:
        """Real time (what ``recorded_at`` of an event states)."""
        return self._system.now()

    async def now(self) -> datetime:
        if not self.dev_mode:
            return self._system.now()
        return self._system.now() + await clock_store.read_offset(self._pool)

    async def advance(self, by: timedelta) -> datetime:
        if by < timedelta(0):
            now = await self.now()
            raise ClockWouldGoBackwards(now, now + by)
        async with self._pool.acquire() as conn, conn.transaction():
            offset = await clock_store.lock_offset(conn) + by
            await clock_store.write_offset(conn, offset)
        return self._system.now() + offset

    async def set(self, target: datetime) -> datetime:
        async with self._pool.acquire() as conn, conn.transaction():
            offset = await clock_store.lock_offset(conn)
            system = self._system.now()
            if target < system + offset:
                raise ClockWouldGoBackwards(system + offset, target)
            await clock_store.write_offset(conn, target - system)
        return target
