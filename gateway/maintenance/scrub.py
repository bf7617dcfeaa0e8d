"""The scrubber: re-reads every shard in the background, finds what is corrupt,
missing or orphaned, and measures durability.

A pass walks every partition of the placement maps in use. For each, it lists
what the pods hold (list_partitions once per pod and pass, list_partition for
each pod holding the partition), then reads what the records pin there
(Store.partition_parts), then checks every pinned block on the pod its epoch
names: absent -> HealItem "missing"; present -> the pod re-reads it and checks
every frame (verify_shard) -> HealItem "corrupt" when bad.

Rules:
- Pods are listed before the records are read. A shard is only ever written
  after its record (pending write) exists, so a listed shard whose object id no
  record names is an orphan, never a write in flight; orphans older than
  `orphan_grace_s` are queued for the collector, which deletes by object id. A
  shard a record pins is never queued, wherever it lies.
- A copy of a pinned object on a pod no placement gives its block any more (an old
  copy a crashed rebalance left, see misplaced.py), older than `orphan_grace_s`, is
  deleted on its pod by the scrubber itself, unless the rebalancer still holds it
  for its own grace (`keep`).
- A block counts as missing only if its record was written before the pass
  listed the pods' partitions (list_partitions, once per pass): a version's
  last_modified is set after every pod stored its shard, so a later record's
  shards may have landed in a partition the listing did not show yet.
- A pinned block the listing did not show is asked for on its pod before it is called
  missing: the rebalancer may have copied it there and re-pinned its record after the
  listing (a pass overlapping a move would otherwise count, and queue, the blocks of
  every partition re-pinned meanwhile as missing on the new epoch's pods).
- A pod that does not answer is skipped for the pass (its blocks count as not
  healthy for durability, and nothing is queued for them); the pass then does
  not count as a full scrub of that pod.
- Throttled: every byte a pod re-reads to verify is paid to one Throttle of
  `rate_bytes_s`. Passes start `interval_s` apart (start to start), or at once when
  asked (request_pass: a pod came back on an empty volume).
- Per pod: shards and bytes checked, corrupt/missing/orphans found, and when it
  was last fully scrubbed (the start of the last pass that covered all of it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kurastore.erasure import ErasureParams
from kurastore.gateway.maintenance.durability import Durability, DurabilityTally
from kurastore.gateway.maintenance.misplaced import find_misplaced
from kurastore.gateway.maintenance.pods import MaintenancePods, call
from kurastore.gateway.maintenance.throttle import RateMeter, Throttle
from kurastore.gateway.objects.topology import Topology
from kurastore.metadata import (
    HealItem,
    PinnedPart,
    PlacementMapNotFound,
    PodRecord,
    ShardRef,
    Store,
)
from kurastore.placement import PlacementMap
from kurastore.storage import PodError, ShardId, ShardInfo, ShardNotFound

log = logging.getLogger(__name__)

MiB = 1 << 20
_ORPHAN_EPOCH_SEARCH = 16  # how many older maps to look through for an orphan's pod


@dataclass(frozen=True)
class ScrubSettings:
    rate_bytes_s: float = 4 * MiB  # shard bytes pods re-read per second; 0: unlimited
    interval_s: float = 24 * 3600.0  # from the start of one pass to the next
    orphan_grace_s: float = 3600.0  # an unreferenced shard younger than this is left
    concurrency: int = 2  # shards verified at once
    pod_timeout_s: float = 60.0  # one pod call (a verify re-reads a whole shard)

    def __post_init__(self) -> None:
        if self.rate_bytes_s < 0 or self.interval_s <= 0 or self.orphan_grace_s < 0:
            raise ValueError("scrub rate, interval and orphan grace must be positive")
        if self.concurrency < 1 or self.pod_timeout_s <= 0:
            raise ValueError("scrub concurrency and pod timeout must be positive")


@dataclass
class PodScrub:
    """One pod as the scrubber saw it."""

    pod_id: str
    shards_checked: int = 0
    bytes_checked: int = 0
    corrupt: int = 0
    missing: int = 0
    orphans: int = 0
    misplaced: int = 0  # old copies of pinned shards deleted
    last_full_scrub: float | None = None  # start of the last pass that covered it all
    last_error: str = ""
    complete: bool = field(default=True, repr=False)  # this pass, so far

    def as_json(self) -> dict[str, Any]:
        return {
            "shards_checked": self.shards_checked, "bytes_checked": self.bytes_checked,
            "corrupt": self.corrupt, "missing": self.missing, "orphans": self.orphans,
            "misplaced": self.misplaced,
            "last_full_scrub": self.last_full_scrub, "last_error": self.last_error or None,
        }


@dataclass
class ScrubProgress:
    started: float = field(default_factory=time.time)  # when the scrubber started
    passes: int = 0
    pass_started: float | None = None  # the pass running (None between passes)
    partitions_done: int = 0
    partitions_total: int = 0
    last_pass_s: float | None = None
    pods: dict[str, PodScrub] = field(default_factory=dict)
    durability: Durability = field(default_factory=lambda: Durability(0.0))
    meter: RateMeter = field(default_factory=RateMeter, repr=False)

    def pod(self, pod_id: str) -> PodScrub:
        found = self.pods.get(pod_id)
        if found is None:
            found = self.pods[pod_id] = PodScrub(pod_id)
        return found

    def oldest_unscrubbed_s(self, pod_ids: list[str], now: float | None = None) -> float:
        """The age of the oldest check any shard may have: since the oldest full scrub
        of a pod, or since the scrubber started for a pod never fully scrubbed."""
        now = time.time() if now is None else now
        times = [self.pod(p).last_full_scrub or self.started for p in pod_ids]
        return max(0.0, now - min(times)) if times else 0.0

    def as_json(self, pod_ids: list[str]) -> dict[str, Any]:
        return {
            "passes": self.passes, "pass_started": self.pass_started,
            "partitions_done": self.partitions_done, "partitions_total": self.partitions_total,
            "last_pass_s": self.last_pass_s, "rate_bytes_s": round(self.meter.rate, 1),
            "oldest_unscrubbed_s": round(self.oldest_unscrubbed_s(pod_ids), 1),
            "pods": {p: self.pod(p).as_json() for p in pod_ids},
            "durability": self.durability.as_json(),
        }


@dataclass
class _Pass:
    """What one pass carries from partition to partition."""

    started: float
    listed_at: float  # when the pods' partitions were listed: later records are not judged
    pods: dict[str, PodRecord]
    holds: dict[str, set[int] | None]  # pod id -> partitions it holds (None: no answer)
    maps: dict[int, PlacementMap]
    tally: DurabilityTally = field(default_factory=DurabilityTally)


class Scrubber:
    def __init__(
        self,
        store: Store,
        pods: MaintenancePods,
        topology: Topology,
        settings: ScrubSettings | None = None,
        clock: Callable[[], float] = time.time,
        on_heal_queued: Callable[[], None] | None = None,
        keep: Callable[[str, ShardId], bool] | None = None,
    ) -> None:
        self._store = store
        self._keep = keep  # (pod id, shard) -> the rebalancer deletes it after its grace
        self._on_heal_queued = on_heal_queued  # the healer's wake-up
        self._clock = clock  # wall time: compared with records' times and shard mtimes
        self._pods = pods
        self._topology = topology
        self.settings = settings or ScrubSettings()
        self._throttle = Throttle(self.settings.rate_bytes_s)
        self.progress = ScrubProgress()
        self._wake = asyncio.Event()

    def request_pass(self) -> None:
        """Start a pass now (after the one running, if any): a pod came back on an empty
        volume, and waiting for the next scheduled pass (a day by default) would leave
        its shards missing and the store reported healthy until then."""
        self._wake.set()

    def pod_ids(self) -> list[str]:
        return [p.pod_id for p in self._topology.pods if p.state != "removed"]

    # --- the loop ------------------------------------------------------------------------
    async def run(self, stop_event: asyncio.Event, first_delay_s: float | None = None) -> None:
        """Scrub until `stop_event` is set: the first pass after `first_delay_s` (default
        min(interval, 60 s)), then one pass every interval_s."""
        delay = min(self.settings.interval_s, 60.0) if first_delay_s is None else first_delay_s
        loop = asyncio.get_running_loop()
        next_start = loop.time() + delay
        while not stop_event.is_set():
            waits = [asyncio.ensure_future(stop_event.wait()),
                     asyncio.ensure_future(self._wake.wait())]
            try:
                await asyncio.wait(waits, timeout=max(0.0, next_start - loop.time()),
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()
            if stop_event.is_set():
                return
            self._wake.clear()
            next_start = loop.time() + self.settings.interval_s
            try:
                await self.scrub_pass()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scrub pass failed")

    # --- one pass --------------------------------------------------------------------------
    async def scrub_pass(self, now: float | None = None) -> Durability:
        """Walk every partition once; returns the durability it measured."""
        progress = self.progress
        started = self._clock() if now is None else now
        clock = time.monotonic()
        await self._topology.refresh()
        pods = {p.pod_id: p for p in self._topology.pods if p.state != "removed"}
        current = self._topology.current
        maps = {current.epoch: current}
        for epoch in await self._store.epochs_in_use():
            with contextlib.suppress(PlacementMapNotFound):
                maps[epoch] = await self._topology.get_map(epoch)
        listed_at = self._clock()
        holds = dict(zip(pods, await asyncio.gather(*(self._holds(p) for p in pods.values())),
                         strict=True))
        state = _Pass(started, listed_at, pods, holds, maps)
        total = max(m.partition_count for m in maps.values())
        progress.pass_started, progress.partitions_done = started, 0
        progress.partitions_total = total
        for pod_id in pods:
            progress.pod(pod_id).complete = holds[pod_id] is not None
        skipped = 0
        for partition in range(total):
            try:
                await self._scrub_partition(state, partition, started)
            except Exception:  # one partition (a metadata hiccup) must not end the pass
                log.exception("scrub of partition %d failed", partition)
                skipped += 1
            progress.partitions_done = partition + 1
        for pod_id in pods:
            if progress.pod(pod_id).complete and not skipped:
                progress.pod(pod_id).last_full_scrub = started
        progress.durability = state.tally.finish()
        progress.passes += 1
        progress.last_pass_s = time.monotonic() - clock
        progress.pass_started = None
        return progress.durability

    async def _holds(self, pod: PodRecord) -> set[int] | None:
        try:
            found = await call(self._pods.list_partitions(pod.url), self.settings.pod_timeout_s,
                               pod.url)
        except PodError as exc:
            self._pod_failed(pod.pod_id, exc)
            return None
        return set(found)

    def _pod_failed(self, pod_id: str, exc: BaseException) -> None:
        record = self.progress.pod(pod_id)
        record.complete = False
        record.last_error = str(exc)[:200]
        log.info("scrub: pod %s did not answer: %s", pod_id, exc)

    async def _list(self, state: _Pass, partition: int) -> dict[str, dict[str, ShardInfo] | None]:
        """pod id -> its shards in `partition` by name ({} when it holds none, None when it
        did not answer)."""

        async def one(pod_id: str) -> dict[str, ShardInfo] | None:
            held = state.holds[pod_id]
            if held is None:
                return None
            if partition not in held:
                return {}
            url = state.pods[pod_id].url
            try:
                infos = await call(self._pods.list_partition(url, partition),
                                   self.settings.pod_timeout_s, url)
            except PodError as exc:
                self._pod_failed(pod_id, exc)
                return None
            return {info.shard.name: info for info in infos}

        ids = list(state.pods)
        return dict(zip(ids, await asyncio.gather(*(one(p) for p in ids)), strict=True))

    async def _scrub_partition(self, state: _Pass, partition: int, now: float) -> None:
        held = await self._list(state, partition)
        parts = await self._store.partition_parts(partition)  # after listing: see rules
        await self._queue_orphans(state, partition, held, parts, now)
        await self._drop_misplaced(state, partition, held, parts, now)
        heal: list[HealItem] = []
        limit = asyncio.Semaphore(self.settings.concurrency)
        for part in parts:
            if part.kind == "pending" or part.written >= state.listed_at:
                continue
            pmap = state.maps.get(part.epoch)
            if pmap is None or partition >= pmap.partition_count:
                continue
            owners = pmap.pods_for(partition, part.width)
            checks = [self._check(limit, part, i, owners[i], held) for i in range(part.width)]
            outcomes = await asyncio.gather(*checks)
            state.tally.add(part, sum(1 for o in outcomes if o == "healthy"))
            heal.extend(
                HealItem(part.object_id, part.shard_tag, i, partition, part.epoch, o, now)
                for i, o in enumerate(outcomes) if o in ("missing", "corrupt")
            )
        if heal:
            log.warning("scrub: partition %d: %d blocks to heal", partition, len(heal))
            await self._store.queue_heal(heal)
            if self._on_heal_queued is not None:
                self._on_heal_queued()

    async def _check(
        self, limit: asyncio.Semaphore, part: PinnedPart, index: int, pod_id: str,
        held: dict[str, dict[str, ShardInfo] | None],
    ) -> str:
        """"healthy", "missing", "corrupt" or "unknown" (pod did not answer)."""
        shards = held.get(pod_id)
        if shards is None:
            return "unknown"
        shard = ShardId(part.object_id, part.shard_tag, index)
        info = shards.get(shard.name)
        record = self.progress.pod(pod_id)
        # Not listed: asked for on its pod now (see rules, a re-pin after the listing); a
        # missing shard costs the pod no read, so it is paid for only once found.
        size = info.size if info is not None else _shard_size(part)
        async with limit:
            await self._throttle.take(size if info is not None else 0)
            url = self._topology.url_of(pod_id)
            try:
                if url is None:
                    raise PodError(f"pod {pod_id} has no URL")
                result = await call(self._pods.verify_shard(url, part.partition, shard),
                                    self.settings.pod_timeout_s, url)
            except ShardNotFound:
                if info is None:
                    record.missing += 1
                    return "missing"
                return "unknown"  # deleted since the listing: its record is going too
            except PodError as exc:
                self._pod_failed(pod_id, exc)
                return "unknown"
        if info is None:
            await self._throttle.take(size)
        record.shards_checked += 1
        record.bytes_checked += size
        self.progress.meter.add(size)
        if result.ok:
            return "healthy"
        record.corrupt += 1
        log.warning("scrub: %s on %s is corrupt (stripes %s)", shard.name, pod_id,
                    list(result.bad_stripes)[:10])
        return "corrupt"

    # --- orphans ---------------------------------------------------------------------------
    async def _queue_orphans(
        self, state: _Pass, partition: int, held: dict[str, dict[str, ShardInfo] | None],
        parts: list[PinnedPart], now: float,
    ) -> None:
        pinned = {part.object_id for part in parts}
        cutoff = now - self.settings.orphan_grace_s
        refs: dict[tuple[str, int], ShardRef] = {}
        for pod_id, shards in held.items():
            for info in (shards or {}).values():
                oid = info.shard.object_id
                if oid in pinned or info.mtime >= cutoff:
                    continue
                self.progress.pod(pod_id).orphans += 1
                pmap = await self._map_holding(state, pod_id, partition)
                if pmap is None:
                    log.warning("scrub: orphan %s on %s is in no known map; left alone",
                                info.shard.name, pod_id)
                    continue
                refs[(oid, pmap.epoch)] = ShardRef(oid, partition, pmap.epoch, pmap.width)
        if refs:
            log.info("scrub: partition %d: %d orphaned object ids queued for collection",
                     partition, len(refs))
            await self._store.queue_collect(list(refs.values()))

    async def _drop_misplaced(
        self, state: _Pass, partition: int, held: dict[str, dict[str, ShardInfo] | None],
        parts: list[PinnedPart], now: float,
    ) -> None:
        newest = max(state.maps)
        for epoch in {p.epoch for p in parts if p.kind != "pending"}:
            for e in range(epoch, newest + 1):
                if e not in state.maps:
                    with contextlib.suppress(PlacementMapNotFound):
                        state.maps[e] = await self._topology.get_map(e)

        def owners(epoch: int, part_partition: int, width: int) -> tuple[str, ...] | None:
            pmap = state.maps.get(epoch)
            if pmap is None or part_partition >= pmap.partition_count:
                return None
            return pmap.pods_for(part_partition, width)

        cutoff = now - self.settings.orphan_grace_s
        for pod_id, info in find_misplaced(held, parts, owners, newest, cutoff):
            if self._keep is not None and self._keep(pod_id, info.shard):
                continue
            url = state.pods[pod_id].url
            try:
                await call(self._pods.delete_shard(url, partition, info.shard),
                           self.settings.pod_timeout_s, url)
            except PodError as exc:
                self._pod_failed(pod_id, exc)
                continue
            self.progress.pod(pod_id).misplaced += 1
            log.info("scrub: deleted misplaced copy %s on %s", info.shard.name, pod_id)

    async def _map_holding(self, state: _Pass, pod_id: str, partition: int) -> PlacementMap | None:
        """A map (newest first) that places `pod_id` in `partition`: the collector deletes
        on the pods of a ShardRef's epoch, so the ref must name one that reaches the pod."""
        newest = max(state.maps)
        for epoch in range(newest, max(0, newest - _ORPHAN_EPOCH_SEARCH), -1):
            pmap = state.maps.get(epoch)
            if pmap is None:
                try:
                    pmap = state.maps[epoch] = await self._topology.get_map(epoch)
                except PlacementMapNotFound:
                    continue
            if partition < pmap.partition_count and pod_id in pmap.pods_for(partition):
                return pmap
        return None


def _shard_size(part: PinnedPart) -> int:
    if part.size < 0:
        return 0
    return ErasureParams(part.k, part.m, part.block_size).shard_size(part.size)
