"""Group commit for the PostgreSQL backend: one gateway's concurrent small writes
(begin_write, commit_version) gathered into one statement each.

Why: on this path the server's cost per transaction (protocol messages, the
function call, starting and committing a transaction, waking the backend, the
WAL flush each committer waits for) and the client's cost per asyncpg call are
larger than the rows' own work; a batch of n pays them once.

How batches form (no timer): a submitted item waits in a queue; a flush is
scheduled with call_soon, so everything submitted in the same turn of the event
loop joins it. At most `max_in_flight` batches are at the server at once; while
they are, new items queue up and leave together when one returns. So a lone
write goes out at once (no added delay), and under load batches grow by
themselves with the round trip time.

Rules:
- One batch is one statement, hence one transaction: it commits entirely or not
  at all, and every caller hears only after it has (a commit's is durable then).
- Items fail one by one: the batch function reports an outcome per item (a
  result, or the error for that item alone), so a failed condition or a retired
  epoch fails its own caller and no other.
- A batch of one item is sent as that item alone (`run_one`): the single-row
  statement costs the server less than the batch function for one row.
- A batch that fails as a whole with an error that is not an outage (an item the
  batch function did not foresee, such as a value the database refuses) is run
  again one item per statement, so the error reaches only the caller whose item
  caused it. An outage (MetadataUnavailable) fails every caller of the batch, as
  it would fail one write's caller: the batch committed entirely or not at all
  (a lost answer may hide a commit, which abort_write allows for).
- With `key`, a batch holds at most one item per key (the batch function may then
  work on all its rows at once); a later item of a key already in the batch waits,
  in order, for a later batch.
- A caller that is cancelled does not withdraw its item (as Database.run).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from kurastore.metadata.errors import MetadataUnavailable

log = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")  # what one item's caller gets
# What a batch function returns for each item: its result, or the error to raise.
Outcome = Any


class Batcher(Generic[ItemT, ResultT]):
    """Gathers items into batches for `run_batch(items) -> [outcome per item]`;
    `run_one(item) -> result` is the fallback for a batch that failed as a whole."""

    def __init__(
        self, run_batch: Callable[[list[ItemT]], Awaitable[list[Outcome]]],
        run_one: Callable[[ItemT], Awaitable[ResultT]], *, max_batch: int = 64,
        max_in_flight: int = 2, key: Callable[[ItemT], Hashable] | None = None,
    ) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be at least 1")
        self._run_batch = run_batch
        self._run_one = run_one
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._key = key
        self._queue: deque[tuple[ItemT, asyncio.Future[ResultT]]] = deque()
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches = 0  # sent so far (tests and benchmarks read these two)
        self.items = 0

    async def submit(self, item: ItemT) -> ResultT:
        future: asyncio.Future[ResultT] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._schedule()
        # A cancelled caller cancels only its future: the item stays queued or in its
        # batch, and its outcome is dropped (_settle skips a future already done).
        return await future

    def _schedule(self) -> None:
        if not self._scheduled and self._queue and self._in_flight < self._max_in_flight:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        while self._queue and self._in_flight < self._max_in_flight:
            batch = self._take()
            self._in_flight += 1
            task = asyncio.ensure_future(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[tuple[ItemT, asyncio.Future[ResultT]]]:
        """The next batch: the oldest items, at most one per key; an item whose key is
        already in the batch stays queued, in order, for a later one."""
        n = min(len(self._queue), self._max_batch)
        if self._key is None:
            return [self._queue.popleft() for _ in range(n)]
        batch: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        later: list[tuple[ItemT, asyncio.Future[ResultT]]] = []
        seen: set[Hashable] = set()
        scan = 4 * self._max_batch  # bounds the work when one key floods the queue
        while self._queue and len(batch) < self._max_batch and scan > 0:
            scan -= 1
            entry = self._queue.popleft()
            k = self._key(entry[0])
            if k in seen:
                later.append(entry)
            else:
                seen.add(k)
                batch.append(entry)
        self._queue.extendleft(reversed(later))
        return batch

    async def _send(self, batch: list[tuple[ItemT, asyncio.Future[ResultT]]]) -> None:
        items = [item for item, _ in batch]
        self.batches += 1
        self.items += len(items)
        try:
            outcomes = await self._outcomes(items)
        except BaseException as exc:  # the loop shutting down: tell everyone, then go
            _settle(batch, [exc] * len(items))
            raise
        finally:
            self._in_flight -= 1
            self._schedule()
        _settle(batch, outcomes)

    async def _outcomes(self, items: list[ItemT]) -> list[Outcome]:
        if len(items) == 1:  # a lone item takes the single statement, cheaper for one
            try:
                return [await self._run_one(items[0])]
            except Exception as exc:
                return [exc]
        try:
            return await self._run_batch(items)
        except MetadataUnavailable as exc:
            return [exc] * len(items)
        except Exception as exc:
            log.warning("metadata batch of %d failed (%r); running it item by item",
                        len(items), exc)
            return list(await asyncio.gather(*(self._run_one(item) for item in items),
                                             return_exceptions=True))

    async def drain(self) -> None:
        """Waits until every submitted item has been answered."""
        while self._queue or self._tasks:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            else:
                await asyncio.sleep(0)


def _settle(batch: list[tuple[Any, asyncio.Future[Any]]], outcomes: list[Outcome]) -> None:
    for (_, future), outcome in zip(batch, outcomes, strict=True):
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)
