"""The maintenance lease runner: workers run on one gateway at a time, and move to
another within ttl * 4/3 when their gateway dies."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from kurastore.gateway.maintenance.lease import LeaseRunner
from kurastore.metadata.sqlite import SQLiteStore

KEY = b"k" * 32
TTL = 0.6


class Workers:
    """Counts who runs the workers; a worker set that overlaps another fails the test."""

    def __init__(self) -> None:
        self.active: list[str] = []
        self.overlaps = 0

    def factory(self, name: str):
        @contextlib.asynccontextmanager
        async def run() -> AsyncIterator[None]:
            if self.active:
                self.overlaps += 1
            self.active.append(name)
            try:
                yield
            finally:
                self.active.remove(name)

        return run


async def test_one_gateway_runs_the_workers_and_another_takes_over(tmp_path: Path) -> None:
    path = str(tmp_path / "m.db")
    stores = [await SQLiteStore.open(path, secret_key=KEY) for _ in range(3)]
    workers = Workers()
    runners = [LeaseRunner(s, workers.factory(f"gw{i}"), ttl_s=TTL, holder=f"gw{i}")
               for i, s in enumerate(stores)]
    for r in runners:
        await r.start()
    await asyncio.sleep(TTL)  # several renewals
    assert workers.active == ["gw0"] and [r.held for r in runners] == [True, False, False]

    # gw0 dies: its loop stops, nothing is released, its workers vanish with it.
    assert runners[0]._task is not None
    runners[0]._task.cancel()
    runners[0]._running = None
    workers.active.clear()
    died = time.monotonic()
    while not workers.active:
        await asyncio.sleep(0.02)
        assert time.monotonic() - died < TTL * 4 / 3 + 0.3, "no takeover within the bound"
    assert len(workers.active) == 1 and workers.active[0] in ("gw1", "gw2")

    # A clean stop releases the lease: the last gateway takes it within ttl/3.
    holder = next(r for r in runners[1:] if r.held)
    other = next(r for r in runners[1:] if not r.held)
    await holder.stop()
    stopped = time.monotonic()
    while not other.held:
        await asyncio.sleep(0.02)
        assert time.monotonic() - stopped < TTL / 3 + 0.3
    await other.stop()
    assert workers.active == [] and workers.overlaps == 0
    for s in stores:
        await s.close()
