"""A deduplicating work queue of resource keys, as controller-runtime's: a key queued
many times is processed once; a key being processed is never handed to a second worker
(a change that arrives meanwhile queues it again for afterwards); keys may be queued
after a delay (requeue, resync), and the earliest requested time wins.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Hashable


class WorkQueue:
    def __init__(self) -> None:
        self._ready: list[Hashable] = []
        self._queued: set[Hashable] = set()
        self._active: set[Hashable] = set()
        self._again: set[Hashable] = set()
        self._delayed: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, float] = {}
        self._counter = itertools.count()
        self._wake = asyncio.Event()

    def add(self, key: Hashable) -> None:
        """Queue `key` now (once, however often it is added)."""
        self._due.pop(key, None)
        if key in self._active:
            self._again.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.append(key)
            self._wake.set()

    def add_after(self, key: Hashable, delay_s: float) -> None:
        """Queue `key` in `delay_s` seconds, unless it is queued sooner anyway."""
        if delay_s <= 0:
            self.add(key)
            return
        due = time.monotonic() + delay_s
        if key in self._queued or self._due.get(key, float("inf")) <= due:
            return
        self._due[key] = due
        heapq.heappush(self._delayed, (due, next(self._counter), key))
        self._wake.set()

    def _promote(self) -> float | None:
        """Moves due keys to the ready list; returns seconds to the next one."""
        now = time.monotonic()
        while self._delayed:
            due, _, key = self._delayed[0]
            if self._due.get(key) != due:
                heapq.heappop(self._delayed)  # superseded by an earlier add
                continue
            if due > now:
                return due - now
            heapq.heappop(self._delayed)
            self.add(key)
        return None

    async def get(self) -> Hashable:
        """The next key to process; call done(key) when finished."""
        while True:
            wait = self._promote()
            if self._ready:
                key = self._ready.pop(0)
                self._queued.discard(key)
                self._active.add(key)
                return key
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass

    def done(self, key: Hashable) -> None:
        self._active.discard(key)
        if key in self._again:
            self._again.discard(key)
            self.add(key)

    def __len__(self) -> int:
        return len(self._ready) + len(self._due)
