"""ReadBudget: the bytes every GET of one gateway may hold in fetched stripes at once.

A GET holds a batch of stripes (up to `read_batch_bytes` per pod request, times k) while
the client takes it, and fetches the next one meanwhile; without a bound shared by all
requests, sixteen clients reading 64 MiB objects held over a GiB. With it, a gateway's
read memory stays near `read_buffer_bytes` however many GETs run: a GET that finds the
budget spent waits its turn for its first batch and fetches later ones without reading
ahead.

Rules:
- Charges are taken before a batch's pod requests start and given back once the
  client has taken the batch (or the read ends). A charge larger than the whole
  budget is cut to the budget, so a lone huge read still runs.
- No hold-and-wait: a reader that holds a charge only *tries* for the next one
  (`try_take`); it waits (`take`) only while it holds nothing. So readers never wait
  on each other in a cycle: every charge held belongs to a reader that can go on.
- Waiters are served in arrival order; a waiter cancelled after it was granted gives
  its grant back.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["ReadBudget"]


class ReadBudget:
    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes < 1:
            raise ValueError("a read budget must be at least 1 byte")
        self.limit = limit_bytes
        self.held = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def _charge(self, nbytes: int) -> int:
        return max(1, min(nbytes, self.limit))

    def try_take(self, nbytes: int) -> int:
        """Take `nbytes` (cut to the limit) if free now and nobody waits; the amount
        taken, or 0."""
        charge = self._charge(nbytes)
        if self._waiters or self.held + charge > self.limit:
            return 0
        self.held += charge
        return charge

    async def take(self, nbytes: int) -> int:
        """Take `nbytes` (cut to the limit), waiting for it; the amount taken. Call it
        only while holding no charge of this budget."""
        taken = self.try_take(nbytes)
        if taken:
            return taken
        charge = self._charge(nbytes)
        granted = asyncio.get_running_loop().create_future()
        self._waiters.append((charge, granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.give(charge)  # granted as it was cancelled: hand it on
            else:
                if (charge, granted) in self._waiters:
                    self._waiters.remove((charge, granted))
                self._grant()  # a smaller waiter behind it may fit now
            raise
        return charge

    def give(self, charge: int) -> None:
        """Give back a charge `take` or `try_take` returned."""
        self.held -= charge
        self._grant()

    def _grant(self) -> None:
        while self._waiters:
            charge, granted = self._waiters[0]
            if granted.done():  # cancelled: its task is about to remove it
                self._waiters.popleft()
                continue
            if self.held + charge > self.limit:
                return
            self._waiters.popleft()
            self.held += charge
            granted.set_result(None)
