"""Budgets: the bytes all GETs (ReadBudget) and all PUTs (WriteBudget) of one gateway may
hold at once, so its memory is bounded by configuration, not by how many clients come.
Why each is shaped as it is: in its class."""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["ReadBudget", "StripeCharge", "WriteBudget"]


class _Budget:
    """`limit` bytes, of which `held` are charged; a charge is cut to the limit."""

    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes < 1:
            raise ValueError("a budget must be at least 1 byte")
        self.limit = limit_bytes
        self.held = 0

    def _charge_of(self, nbytes: int) -> int:
        return max(1, min(nbytes, self.limit))

    def try_take(self, nbytes: int) -> int:
        """Take `nbytes` (cut to the limit) if that much is free; the amount taken (to
        give back), or 0."""
        charge = self._charge_of(nbytes)
        if self.held + charge > self.limit:
            return 0
        self.held += charge
        return charge

    def give(self, charge: int) -> None:
        """Give back a charge `try_take` returned."""
        self.held -= charge


class ReadBudget(_Budget):
    """The stripes all GETs of a gateway hold in large batches.

    A GET holds a batch of stripes (up to `read_batch_bytes` per pod request, times k)
    while the client takes it, and fetches the next one meanwhile: sixteen clients reading
    64 MiB objects held about a GiB. Each batch is charged here before its pod requests
    start and given back once the client has taken it (get.py, StripeReader).

    Rules:
    - Nobody waits for the budget. A GET whose batch does not fit reads that batch one
      stripe at a time, nothing ahead and uncharged: slower (a pod request per block per
      stripe) but never stuck behind clients that read slowly, and never a lock-up. So a
      gateway's GETs hold at most the budget plus one stripe each (max_in_flight_requests
      bounds those).
    - A charge larger than the whole budget is cut to the budget: a lone huge read still
      gets its batches.
    """


class WriteBudget(_Budget):
    """The encoded stripes all PUTs of a gateway hold on their way to the pods.

    A streamed PUT keeps a few stripes in flight (being encoded, queued for each shard
    stream, being sent), about 7 MiB of it per request at 1 MiB stripes, and a burst PUT
    holds its whole encoded body: 64 concurrent 10 MiB uploads took a gateway to 636 MiB.
    Each stripe is charged here before its first byte is cut from the body (each burst
    before its body is received), and given back once the shard streams have sent it
    (fanout.py), not when the PUT ends: an uploader that sends slowly holds nothing
    for the stripes the pods already took.

    Rules:
    - A charge that does not fit waits, first come first served. A PUT first hands the
      stripes it has encoded to its shard streams, so that all it holds while it waits
      drains to the pods whatever the clients do: the wait is bounded by the pods'
      speed, and the client meanwhile meets TCP backpressure. What is not charged is
      the request's receive buffer (2 x aiohttp's read_bufsize, 2 MiB a PUT), which
      max_in_flight_requests bounds.
    - A wait is cut off after `wait_s` and the stripe goes on uncharged: charges held by a
      stream to a hung pod are freed only once its own write drops that pod, so a PUT
      must never wait on them for good.
    - A charge larger than the whole budget is cut to the budget.
    """

    def __init__(self, limit_bytes: int, wait_s: float) -> None:
        super().__init__(limit_bytes)
        self.wait_s = wait_s
        self.waits = 0  # charges that had to wait (a gauge of memory pressure)
        self.timeouts = 0  # waits cut off by wait_s
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    def try_take(self, nbytes: int) -> int:
        """As _Budget.try_take, and 0 while others wait: nobody jumps the line."""
        return 0 if self._waiters else super().try_take(nbytes)

    async def take(self, nbytes: int) -> int:
        """Take `nbytes` (cut to the limit), waiting up to `wait_s` for room: the amount
        taken (to give back), or 0 when the wait was cut off. A caller must not wait
        while it holds charges that only its own progress gives back."""
        taken = self.try_take(nbytes)
        if taken:
            return taken
        charge = self._charge_of(nbytes)
        self.waits += 1
        granted = asyncio.get_running_loop().create_future()
        entry = (charge, granted)
        self._waiters.append(entry)
        try:
            await asyncio.wait((granted,), timeout=self.wait_s)
        except asyncio.CancelledError:
            if granted.done():
                self.give(charge)
            else:
                self._withdraw(entry)
            raise
        if granted.done():
            return charge
        self.timeouts += 1
        self._withdraw(entry)
        return 0

    def give(self, charge: int) -> None:
        """Give back a charge `take` returned (0 gives nothing back)."""
        if charge:
            super().give(charge)
            self._grant()

    def _withdraw(self, entry: tuple[int, asyncio.Future[None]]) -> None:
        self._waiters.remove(entry)
        entry[1].cancel()
        self._grant()  # a large charge leaving the head may let smaller ones in

    def _grant(self) -> None:
        while self._waiters and self.held + self._waiters[0][0] <= self.limit:
            charge, granted = self._waiters.popleft()
            self.held += charge
            granted.set_result(None)


class StripeCharge:
    """One stripe's charge, given back once every shard stream it was sent to is done
    with its frame (`stream_done`): the data frames are views of one stripe buffer, which
    lives until the last of them is sent. Or when the write ends (`release_all`)."""

    __slots__ = ("_amount", "_budget", "_streams")

    def __init__(self, budget: WriteBudget, amount: int) -> None:
        self._budget = budget
        self._amount = amount
        self._streams = 1

    def sent_to(self, streams: int) -> None:
        """The stripe goes to `streams` shard streams."""
        self._streams = max(1, streams)

    @property
    def released(self) -> bool:
        return self._amount == 0

    def stream_done(self) -> None:
        """One stream sent its frame, or dropped it by failing."""
        self._streams -= 1
        if self._streams <= 0:
            self.release_all()

    def release_all(self) -> None:
        amount, self._amount = self._amount, 0
        self._budget.give(amount)
