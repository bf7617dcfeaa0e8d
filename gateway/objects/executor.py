"""The bounded CPU executor and the cancellation shield of the data path.

Rules:
- zfec, large hashes and decodes run in one ThreadPoolExecutor of `cpu_threads`
  threads (they release the GIL); nothing CPU-heavy runs on the event loop.
- Callers bound how much work they queue (stripes in flight, prefetch), so the
  executor's own queue stays short.
- `shielded` runs a commit or an abort to its end even when the caller is
  cancelled (a client disconnect), then re-raises the cancellation.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


class CpuPool:
    def __init__(self, threads: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kura-cpu")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


async def shielded(awaitable: Awaitable[T]) -> T:
    """Await `awaitable` to completion even if the caller is cancelled meanwhile; the
    caller's cancellation is re-raised afterwards (its result is then lost)."""
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result
