"""Write flow control for the lean asyncio HTTP protocol of this package (the gateway's
wire client): it waits, with a future, while its transport's buffer is full."""

from __future__ import annotations

import asyncio

__all__ = ["WriteFlow"]


class WriteFlow:
    """Mixin for an asyncio protocol: `pause_writing` leaves a future in `_can_write`
    that `resume_writing` completes, so a writer can await it before writing more."""

    _can_write: asyncio.Future[None] | None = None

    def pause_writing(self) -> None:
        if self._can_write is None or self._can_write.done():
            self._can_write = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)
