"""The healer: rebuilds missing and corrupt shards from the healthy ones.

Work comes from the metadata heal queue (HealItem: object id, shard tag, block
index), filled by degraded reads, by writes that dropped a pod and by the
scrubber. Each round takes a window of the queue and works on it part by part.

Rules:
- Order: the items of a window are grouped by part; parts with the most blocks
  queued (the fewest healthy blocks) go first, then confirmed damage ("corrupt",
  "missing") before "unreachable" (a pod that may simply have restarted), then
  the oldest. A part that lost m blocks is one failure from data loss; one that
  lost one block is not.
- The record decides: the part is looked up by object id (Store.find_parts); its
  pinned epoch and partition give the pods, its geometry the frames. A part no
  record names any more (deleted meanwhile) or only a pending write names (its
  writer queues what it dropped after commit) is dropped from the queue.
- Each queued block is checked on its pod first (verify_shard): a good shard is
  done without work; a missing one is rebuilt (rebuild.py: any k good frames per
  stripe, the good frames of corrupt shards included).
- A corrupt shard must be deleted before its replacement is written (pods never
  overwrite), and its good frames may be what keeps another stripe readable. So
  corrupt shards are replaced one at a time, after the missing ones, and only when
  the other shards hold k good frames of every stripe without it (every shard of the
  part is verified to know; damage found there is queued too). One that fails this
  stays in place, readable, and waits: deleting it would lose the part (3 shards of
  a 4+2 part, each bad in a different stripe, still read back whole).
- Resumable: an item leaves the queue (done_heal) only once its shard is stored
  and verified by the pod's commit, so a crash repeats work, never loses it. An
  item that cannot be healed now (its pod is down, fewer than k blocks answer)
  goes to the back of the queue and waits: 1 s, doubling each time it fails
  again, up to `retry_s` (a restarting pod is back in a second or two; a dead
  one costs a refused connection every retry_s).
- Throttled: every byte read and written (and every byte a pod re-reads to
  verify) is paid to one Throttle of `rate_bytes_s`.
- A part deleted while it was being rebuilt: the shards just written are queued
  for the collector (deleting is idempotent), so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kurastore.erasure import ErasureParams, NotEnoughBlocks
from kurastore.gateway.maintenance.pods import MaintenancePods, call
from kurastore.gateway.maintenance.rebuild import PartRebuilder
from kurastore.gateway.maintenance.throttle import RateMeter, Throttle
from kurastore.gateway.objects.config import ObjectConfig
from kurastore.gateway.objects.executor import CpuPool
from kurastore.gateway.objects.health import PodHealth
from kurastore.gateway.objects.topology import Topology
from kurastore.metadata import HealItem, PinnedPart, PlacementMapNotFound, ShardRef, Store
from kurastore.storage import PodError, ShardId, ShardNotFound

log = logging.getLogger(__name__)

MiB = 1 << 20
_URGENCY = {"corrupt": 0, "missing": 0, "unreachable": 1}  # lower goes first
_FIRST_RETRY_S = 1.0
Key = tuple[str, str, int]  # (object id, shard tag, index)


@dataclass(frozen=True)
class HealSettings:
    rate_bytes_s: float = 64 * MiB  # pod bytes read + written per second; 0: unlimited
    interval_s: float = 2.0  # queue polling while idle (the scrubber also wakes it)
    window: int = 500  # queue items ordered and worked on per round
    concurrency: int = 2  # parts rebuilt at once
    retry_s: float = 10.0  # the longest an item that could not be healed waits
    batch_bytes: int = 4 * MiB  # per source shard read

    def __post_init__(self) -> None:
        if self.rate_bytes_s < 0 or self.interval_s <= 0 or self.retry_s < 0:
            raise ValueError("heal rate, interval and retry must be positive")
        if self.window < 1 or self.concurrency < 1 or self.batch_bytes < 1:
            raise ValueError("heal window, concurrency and batch must be >= 1")


@dataclass
class HealProgress:
    """What the admin API and the metrics show of the healer."""

    started: float = field(default_factory=time.time)
    queued: int = 0  # items in the queue at the last look
    healed: int = 0  # shards rebuilt and stored
    healthy: int = 0  # items whose shard turned out fine (nothing to do)
    dropped: int = 0  # items of parts no record names any more
    deferred: int = 0  # items sent to the back of the queue for a later try
    unrecoverable: int = 0  # tries that found fewer than k good blocks
    bytes_rebuilt: int = 0  # shard bytes written
    bytes_read: int = 0  # source shard bytes read
    rounds: int = 0
    busy_s: float = 0.0  # time spent in rounds that had work
    last_round: float | None = None
    meter: RateMeter = field(default_factory=RateMeter, repr=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "started": self.started, "queued": self.queued, "healed": self.healed,
            "already_healthy": self.healthy, "dropped": self.dropped,
            "deferred": self.deferred, "unrecoverable": self.unrecoverable,
            "bytes_rebuilt": self.bytes_rebuilt, "bytes_read": self.bytes_read,
            "rate_bytes_s": round(self.meter.rate, 1), "rounds": self.rounds,
            "busy_s": round(self.busy_s, 3),
            "last_round": self.last_round,
        }


def order_groups(
    groups: dict[tuple[str, str], list[tuple[int, HealItem]]],
) -> list[list[tuple[int, HealItem]]]:
    """Most blocks queued first, then confirmed damage, then the oldest."""

    def urgency(items: list[tuple[int, HealItem]]) -> tuple[int, int, float]:
        rank = min(_URGENCY.get(item.reason, 1) for _id, item in items)
        return (-len(items), rank, min(item.queued for _id, item in items))

    return sorted(groups.values(), key=urgency)


class Healer:
    def __init__(
        self,
        store: Store,
        pods: MaintenancePods,
        topology: Topology,
        config: ObjectConfig,
        settings: HealSettings | None = None,
        health: PodHealth | None = None,
    ) -> None:
        self._store = store
        self._pods = pods
        self._topology = topology
        self._config = config
        self.settings = settings or HealSettings()
        self._health = health or PodHealth(config)
        self._throttle = Throttle(self.settings.rate_bytes_s)
        self._cpu = CpuPool(1)
        self._not_before: dict[Key, tuple[float, float]] = {}  # key -> (due, last wait)
        self.progress = HealProgress()
        self._wake = asyncio.Event()

    def close(self) -> None:
        self._cpu.close()

    # --- the loop ------------------------------------------------------------------------
    async def run(self, stop_event: asyncio.Event) -> None:
        """Heal until `stop_event` is set; a full window goes on without a pause."""
        while not stop_event.is_set():
            worked = 0
            self._wake.clear()  # a wake-up during the round below makes the next one start
            try:
                worked = await self.heal_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("heal round failed")
            if worked:
                continue
            waits = [asyncio.ensure_future(e.wait()) for e in (stop_event, self._wake)]
            try:
                await asyncio.wait(waits, timeout=self.settings.interval_s,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waits:
                    waiter.cancel()

    def wake(self) -> None:
        """New items were queued (the scrubber calls this): look now, not at the next
        poll."""
        self._wake.set()

    async def heal_once(self, now: float | None = None) -> int:
        """One round over a window of the queue. Returns the items settled (healed,
        found healthy or dropped); deferred ones do not count."""
        now = time.time() if now is None else now
        clock = time.monotonic()
        taken = await self._store.take_heal(self.settings.window)
        due = [(i, item) for i, item in taken
               if self._not_before.get(_key(item), (0.0, 0.0))[0] <= now]
        groups: dict[tuple[str, str], list[tuple[int, HealItem]]] = {}
        for item_id, item in due:
            groups.setdefault((item.object_id, item.shard_tag), []).append((item_id, item))
        limit = asyncio.Semaphore(self.settings.concurrency)

        async def one(group: list[tuple[int, HealItem]]) -> int:
            async with limit:
                try:
                    return await self._heal_part(group, now)
                except Exception:  # one bad part must not stall the others
                    log.exception("healing %s.%s failed", group[0][1].object_id,
                                  group[0][1].shard_tag)
                    with contextlib.suppress(Exception):
                        await self._defer(group, now)
                    return 0

        settled = sum(await asyncio.gather(*(one(g) for g in order_groups(groups))))
        self.progress.rounds += 1
        self.progress.last_round = time.time()
        if groups:
            self.progress.busy_s += time.monotonic() - clock
        self.progress.queued = await self._store.heal_queue_length()
        return settled

    # --- one part --------------------------------------------------------------------------
    async def _heal_part(self, group: list[tuple[int, HealItem]], now: float) -> int:
        first = group[0][1]
        try:
            part = await self._find(first.object_id, first.shard_tag)
            if part is None:
                await self._store.done_heal([i for i, _ in group])
                self.progress.dropped += len(group)
                return len(group)
            urls = await self._urls(part)
        except PlacementMapNotFound:
            log.error("heal %s.%s: its epoch's map is gone", first.object_id, first.shard_tag)
            await self._defer(group, now)
            return 0
        settled, missing, corrupt, waiting = [], [], [], []
        bad: dict[int, frozenset[int]] = {}  # block index -> its stripes without a good frame
        for item_id, item in group:
            state, bad_stripes = await self._inspect(urls, part, item.index)
            if state == "healthy":
                settled.append(item_id)
                self.progress.healthy += 1
            elif state == "down":
                waiting.append((item_id, item))
            elif state == "missing":
                missing.append((item_id, item))
            else:
                corrupt.append((item_id, item))
                bad[item.index] = bad_stripes
        if missing:
            healed, failed = await self._rebuild(part, urls, missing)
            settled.extend(healed)
            waiting.extend(failed)
            everything = frozenset(range(_stripes(part)))
            for item_id, item in missing:
                bad[item.index] = frozenset() if item_id in healed else everything
        if corrupt:
            healed, failed = await self._replace_corrupt(part, urls, corrupt, bad)
            settled.extend(healed)
            waiting.extend(failed)
        if settled:
            await self._store.done_heal(settled)
            for item_id, item in group:
                if item_id in settled:
                    self._not_before.pop(_key(item), None)
        if waiting:
            await self._defer(waiting, now)
        return len(settled)

    async def _find(self, object_id: str, shard_tag: str) -> PinnedPart | None:
        parts = await self._store.find_parts(object_id)
        return next((p for p in parts if p.shard_tag == shard_tag and p.kind != "pending"),
                    None)

    async def _urls(self, part: PinnedPart) -> list[str | None]:
        pmap = await self._topology.get_map(part.epoch)
        await self._topology.ensure_fresh()
        return [self._topology.url_of(p) for p in pmap.pods_for(part.partition, part.width)]

    async def _inspect(self, urls: Sequence[str | None], part: PinnedPart, index: int
                       ) -> tuple[str, frozenset[int]]:
        """("healthy" | "missing" | "corrupt" | "down", the stripes without a good frame)."""
        url = urls[index]
        everything = frozenset(range(_stripes(part)))
        if url is None:
            return "down", everything
        shard = ShardId(part.object_id, part.shard_tag, index)
        params = ErasureParams(part.k, part.m, part.block_size)
        await self._throttle.take(params.shard_size(part.size))
        try:
            result = await call(self._pods.verify_shard(url, part.partition, shard),
                                self._config.pod_timeout_s, url)
        except ShardNotFound:
            return "missing", everything
        except PodError as exc:
            log.info("heal: cannot check %s on %s: %s", shard.name, url, exc)
            return "down", everything
        count = len(everything)
        if result.ok and result.frames == count:
            return "healthy", frozenset()
        if not result.ok and not result.frames:  # no frame could be trusted at all
            bad = everything
        else:
            bad = frozenset(result.bad_stripes) | frozenset(range(result.frames, count))
        log.warning("heal: %s on %s is corrupt (stripes %s)", shard.name, url,
                    sorted(bad)[:10])
        return "corrupt", bad

    async def _replace_corrupt(
        self, part: PinnedPart, urls: list[str | None], corrupt: list[tuple[int, HealItem]],
        bad: dict[int, frozenset[int]],
    ) -> tuple[list[int], list[tuple[int, HealItem]]]:
        """Delete and rebuild corrupt shards one by one, each only while the others
        hold k good frames of every stripe without it. (queue ids healed, items left)."""
        found: list[HealItem] = []  # damage nobody had queued yet: queued now
        for index in range(part.width):
            if index not in bad:
                state, bad[index] = await self._inspect(urls, part, index)
                if state in ("missing", "corrupt"):
                    found.append(HealItem(part.object_id, part.shard_tag, index,
                                          part.partition, part.epoch, state, time.time()))
        if found:
            await self._store.queue_heal(found)
        everything = frozenset(range(_stripes(part)))
        healed: list[int] = []
        failed: list[tuple[int, HealItem]] = []
        pending = list(corrupt)
        while True:
            ready = next((entry for entry in pending
                          if _replaceable(bad, entry[1].index, part.k)), None)
            if ready is None:
                break
            pending.remove(ready)
            item = ready[1]
            url = urls[item.index]
            assert url is not None  # a shard that answered verify_shard has a pod
            shard = ShardId(part.object_id, part.shard_tag, item.index)
            try:
                await call(self._pods.delete_shard(url, part.partition, shard),
                           self._config.pod_timeout_s, url)
            except PodError:
                failed.append(ready)
                continue
            bad[item.index] = everything  # gone until its rebuild is stored
            done, left = await self._rebuild(part, urls, [ready])
            healed.extend(done)
            failed.extend(left)
            if done:
                bad[item.index] = frozenset()
        for entry in pending:
            log.error("heal %s.%s.%d: corrupt in stripes %s, but the other shards lack k "
                      "good frames of some stripe without it; left in place (still "
                      "readable) until other shards are healed", part.object_id,
                      part.shard_tag, entry[1].index, sorted(bad[entry[1].index])[:10])
        return healed, failed + pending

    async def _rebuild(
        self, part: PinnedPart, urls: list[str | None], targets: list[tuple[int, HealItem]]
    ) -> tuple[list[int], list[tuple[int, HealItem]]]:
        """(queue ids healed, items that failed)."""
        indices = [item.index for _id, item in targets]
        rebuilder = PartRebuilder(
            self._pods, urls, part, indices, cpu=self._cpu, throttle=self._throttle,
            config=self._config, health=self._health, batch_bytes=self.settings.batch_bytes,
        )
        try:
            result = await rebuilder.run()
        except NotEnoughBlocks as exc:
            self.progress.unrecoverable += 1
            log.error("heal %s.%s: %s; waiting for pods to come back", part.object_id,
                      part.shard_tag, exc)
            return [], targets
        finally:
            self.progress.bytes_read += rebuilder.result.bytes_read
        p = self.progress
        p.bytes_rebuilt += result.bytes_written
        p.meter.add(result.bytes_written)
        p.healed += len(result.stored)
        for index, why in result.failed.items():
            log.info("heal %s.%s.%d: %s", part.object_id, part.shard_tag, index, why)
        if result.stored and await self._find(part.object_id, part.shard_tag) is None:
            # Deleted while we rebuilt: what we just wrote is an orphan.
            ref = ShardRef(part.object_id, part.partition, part.epoch, part.width,
                           part.shard_tag)
            await self._store.queue_collect([ref])
        healed = [i for i, item in targets if item.index in result.stored]
        failed = [(i, item) for i, item in targets if item.index not in result.stored]
        return healed, failed

    async def _defer(self, items: list[tuple[int, HealItem]], now: float) -> None:
        """Back of the queue, and not before retry_s (the queue has no due time)."""
        self.progress.deferred += len(items)
        for _id, item in items:
            last = self._not_before.get(_key(item), (0.0, 0.0))[1]
            wait = min(self.settings.retry_s, max(_FIRST_RETRY_S, 2 * last))
            self._not_before[_key(item)] = (now + wait, wait)
        await self._store.done_heal([i for i, _ in items])
        await self._store.queue_heal([item for _id, item in items])
        if len(self._not_before) > 100_000:  # forget the oldest deferrals, not the queue
            for key in sorted(self._not_before, key=self._not_before.__getitem__)[:50_000]:
                del self._not_before[key]


def _key(item: HealItem) -> Key:
    return (item.object_id, item.shard_tag, item.index)


def _stripes(part: PinnedPart) -> int:
    return ErasureParams(part.k, part.m, part.block_size).stripe_count(part.size)


def _replaceable(bad: dict[int, frozenset[int]], index: int, k: int) -> bool:
    """True if every stripe keeps k good frames among the shards other than `index`."""
    others = [stripes for i, stripes in bad.items() if i != index]
    damaged = frozenset().union(*others)  # a stripe bad nowhere else has width - 1 >= k
    return all(sum(stripe not in s for s in others) >= k for stripe in damaged)


