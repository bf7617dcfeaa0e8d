"""The maintenance lease: one active set of maintenance workers per cluster.

Every gateway runs a LeaseRunner; only the one holding the lease (a row in the
metadata store, see Store.try_acquire_lease) runs the workers. The holder renews
every ttl/3; the others try to take it at the same pace.

Rules:
- Bound on takeover: a holder that dies stops renewing, its lease expires at most
  ttl after its last renewal, and another gateway takes it within ttl/3 after
  that: ttl * 4/3 at most (20 s with the default ttl of 15 s). A holder that stops
  cleanly releases the lease, and the next one takes it within ttl/3.
- A holder that cannot renew (database unreachable, or someone else holds the
  lease) stops its workers at once: it can no longer prove it is alone, and its
  lease may run out before it hears back. Stopping early is safe, running twice
  is not.
- The workers are an async context manager factory: entered when the lease is won,
  exited when it is lost or the gateway stops. Expiry is on the database's clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from kurastore.metadata import Store

log = logging.getLogger(__name__)

MAINTENANCE_LEASE = "maintenance"
DEFAULT_TTL_S = 15.0


def holder_id() -> str:
    """Names this process in the lease table: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class LeaseRunner:
    def __init__(
        self,
        store: Store,
        workers: Callable[[], AbstractAsyncContextManager[Any]],
        *,
        name: str = MAINTENANCE_LEASE,
        holder: str | None = None,
        ttl_s: float = DEFAULT_TTL_S,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self._store = store
        self._workers = workers
        self.name = name
        self.holder = holder or holder_id()
        self.ttl_s = ttl_s
        self._running: AbstractAsyncContextManager[Any] | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def held(self) -> bool:
        """True while this gateway runs the workers."""
        return self._running is not None

    async def start(self) -> None:
        """One attempt now (so a lone gateway starts its workers at once), then the
        renew-or-retry loop in the background."""
        await self._step()
        self._task = asyncio.create_task(self._loop(), name=f"lease-{self.name}")

    async def stop(self) -> None:
        """Stops the workers (if running) and gives the lease up."""
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._exit()

    async def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.ttl_s / 3):
                        await self._stop.wait()
                if not self._stop.is_set():
                    await self._step()
        finally:
            await self._exit()

    async def _step(self) -> None:
        if await self._try():
            if self._running is None:
                log.info("lease %s taken by %s: starting the workers", self.name, self.holder)
                cm = self._workers()
                await cm.__aenter__()
                self._running = cm
        elif self._running is not None:
            log.warning("lease %s lost by %s: stopping the workers", self.name, self.holder)
            await self._exit(release=False)

    async def _try(self) -> bool:
        try:
            async with asyncio.timeout(self.ttl_s / 3):
                return await self._store.try_acquire_lease(self.name, self.holder, self.ttl_s)
        except Exception as exc:  # unreachable database: not provably the holder
            log.info("lease %s: cannot renew or take it: %r", self.name, exc)
            return False

    async def _exit(self, release: bool = True) -> None:
        cm, self._running = self._running, None
        if cm is not None:
            try:
                await cm.__aexit__(None, None, None)
            except Exception:
                log.exception("stopping the workers of lease %s failed", self.name)
        if release:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5.0):
                    await self._store.release_lease(self.name, self.holder)
