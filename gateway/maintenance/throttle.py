"""Throttle and RateMeter: the byte budgets of the background workers and the rates
they report.

Rules:
- A Throttle is a token bucket of `rate` bytes per second holding at most one
  second of budget (`burst`): idle time does not buy a later flood. A rate of 0
  means unlimited. `take(n)` always lets the work through, then sleeps the debt
  off, so one piece larger than the bucket is not refused, only paid for.
- A RateMeter is an exponentially decaying average over about `window_s`: what
  the admin API and the metrics call "rate", which falls to 0 while idle.
- Both run on the event loop and read a monotonic clock that tests can replace.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

Clock = Callable[[], float]


class Throttle:
    def __init__(self, rate: float, clock: Clock = time.monotonic) -> None:
        if rate < 0 or not math.isfinite(rate):
            raise ValueError(f"rate must be finite and >= 0, got {rate}")
        self.rate = rate
        self._clock = clock
        self._tokens = rate  # a full bucket: the first second goes at once
        self._last = clock()

    @property
    def burst(self) -> float:
        return self.rate

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now

    def delay_for(self, n: int) -> float:
        """Spend `n` bytes; the seconds to wait before going on (0 within the budget)."""
        if self.rate == 0 or n <= 0:
            return 0.0
        self._refill()
        self._tokens -= n
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    async def take(self, n: int) -> None:
        delay = self.delay_for(n)
        if delay > 0:
            await asyncio.sleep(delay)


class RateMeter:
    """Bytes (or items) per second, averaged over about `window_s`."""

    def __init__(self, window_s: float = 30.0, clock: Clock = time.monotonic) -> None:
        self._window_s = window_s
        self._clock = clock
        self._rate = 0.0
        self._last = clock()
        self.total = 0

    def _decay(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        if elapsed > 0:
            self._rate *= math.exp(-elapsed / self._window_s)
            self._last = now

    def add(self, n: int) -> None:
        self._decay()
        self.total += n
        self._rate += n / self._window_s

    @property
    def rate(self) -> float:
        self._decay()
        return self._rate
