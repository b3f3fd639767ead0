"""Client-side rate limits: requests and tokens per minute, as two token buckets refilled continuously.

Each bucket holds at most `burst_seconds` (default 1) worth of its per-minute allowance, so a run starts
smoothly instead of spending a whole minute's budget in its first second (providers enforce their
per-minute limits over short windows too). A request larger than the bucket waits
until the bucket is full and then takes it into debt, so an oversized request is slow, never stuck.
Concurrent runs share a provider's limit through the Dagster pool of the provider's asset (one step per
provider at a time), which makes this process's view of the limit the whole picture.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class _Bucket:
    def __init__(self, per_minute: float, burst_seconds: float, now: float):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst_seconds)
        self.level = self.capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, cost: float) -> float:
        """Seconds until `cost` may be taken (0 when it may be taken now)."""
        needed = min(cost, self.capacity)
        return 0.0 if self.level >= needed else (needed - self.level) / self.rate


class RateLimiter:
    """`await limiter.acquire(tokens)` before each request; FIFO among waiters."""

    def __init__(
        self,
        requests_per_minute: float | None,
        tokens_per_minute: float | None,
        *,
        burst_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        now = clock()
        self._requests = _Bucket(requests_per_minute, burst_seconds, now) if requests_per_minute else None
        self._tokens = _Bucket(tokens_per_minute, burst_seconds, now) if tokens_per_minute else None
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self.waited_seconds = 0.0

    async def acquire(self, tokens: int = 0) -> None:
        costs = [(b, c) for b, c in ((self._requests, 1.0), (self._tokens, float(tokens))) if b is not None]
        if not costs:
            return
        async with self._lock:
            while True:
                now = self._clock()
                for bucket, _ in costs:
                    bucket.refill(now)
                wait = max(bucket.wait_for(cost) for bucket, cost in costs)
                if wait <= 0:
                    for bucket, cost in costs:
                        bucket.level -= cost
                    return
                self.waited_seconds += wait
                await self._sleep(wait)
