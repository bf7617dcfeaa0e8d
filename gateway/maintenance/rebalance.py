"""The rebalancer: moves shards to the pods of the current placement epoch, so that
older epochs stop being pinned and are retired.

When records of partition p still pin an older epoch e than the current one E,
the slots whose pod differs between map e and map E are copied to their new pods,
verified there, and then every record of p at e is re-pinned to E in one
transaction (Store.repin_partition). The old copies are deleted only after
`grace_s`, longer than any read that opened a record while it still said e.

Rules:
- The state is the pins themselves: a crash only repeats copies (a copy already on
  its new pod is verified and kept), never loses one. The only thing kept in
  memory is the list of old copies waiting out their grace: after a crash the
  scrubber finds them (misplaced.py) and deletes them once older than its orphan
  grace; while listed here, it leaves them to us (holds_old_copy).
- Old copies are deleted shard by shard (only the slots that moved): a
  collector ShardRef deletes every slot of a map, including the slots that kept
  their pod and serve epoch E.
- A copy moved onto a pod is never an old copy there any more: when a slot moves
  back to a pod whose old copy still waits out its grace (scale out, then in), the
  copy is verified and kept as the new home, and leaves the list of old copies.
- A copy is a ranged read from the old pod streamed into the new pod; a copy
  that cannot be read (old pod down, shard missing) or that the new pod finds
  corrupt (verify_shard) is rebuilt from k other blocks by rebuild.py.
- A partition with a write still streaming under epoch e (a pending record) is
  left for a later pass: that write's shards are going to e's pods. A write
  that pinned e and commits after the re-pin is found by the next pass (every
  pass re-reads the pins) and moved the same way, so passes repeat until no
  record pins an epoch older than E.
- The re-pin names the parts that were copied, and moves nothing if the partition
  holds anything else at e by then (Store.repin_partition: PartitionChanged): an
  upload's parts inherit its epoch, so a part stored between the read and the
  re-pin would otherwise be re-pinned uncopied, and its old copies later deleted
  as misplaced (found by fault injection). A part still being written when the
  upload moves is refused at its commit (UploadRepinned) and retried by the client.
- Throttled: every byte read and written is paid to one Throttle of
  `rate_bytes_s`; at most `concurrency` partitions move at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from kurastore.erasure import ErasureParams, NotEnoughBlocks
from kurastore.gateway.maintenance.pods import MaintenancePods, call
from kurastore.gateway.maintenance.rebuild import PartRebuilder
from kurastore.gateway.maintenance.throttle import RateMeter, Throttle
from kurastore.gateway.objects.config import ObjectConfig
from kurastore.gateway.objects.executor import CpuPool
from kurastore.gateway.objects.health import PodHealth
from kurastore.gateway.objects.topology import NoPlacementMap, Topology
from kurastore.metadata import REMOVED_VERSION_GRACE_S, PartitionChanged, PinnedPart, Store
from kurastore.placement import PlacementMap
from kurastore.storage import PodError, ShardExists, ShardId

log = logging.getLogger(__name__)

MiB = 1 << 20


@dataclass(frozen=True)
class RebalanceSettings:
    rate_bytes_s: float = 32 * MiB  # pod bytes read + written per second; 0: unlimited
    interval_s: float = 2.0  # how often an idle rebalancer looks for old pins
    concurrency: int = 2  # partitions moved at once
    grace_s: float = REMOVED_VERSION_GRACE_S  # old copies live this long after the re-pin
    chunk_bytes: int = 4 * MiB  # per ranged read of a shard being copied
    scan_concurrency: int = 8  # partitions whose pins are read at once while planning

    def __post_init__(self) -> None:
        if self.rate_bytes_s < 0 or self.interval_s <= 0 or self.grace_s < 0:
            raise ValueError("rebalance rate, interval and grace must be positive")
        if min(self.concurrency, self.chunk_bytes, self.scan_concurrency) < 1:
            raise ValueError("rebalance concurrency and chunk must be >= 1")


@dataclass
class RebalanceProgress:
    """What the admin API and the metrics show of the rebalancer."""

    target_epoch: int | None = None  # the current epoch everything moves to
    old_epochs: list[int] = field(default_factory=list)  # older epochs still pinned
    retired_epochs: list[int] = field(default_factory=list)  # pinned once, now not
    partitions_left: int = 0  # partitions with records at an older epoch (last plan)
    partitions_moved: int = 0  # re-pinned since start
    partitions_waiting: int = 0  # left for later: a write is still streaming there
    bytes_left: int = 0  # shard bytes still to copy (last plan, minus copied since)
    bytes_moved: int = 0  # shard bytes written to new pods since start
    shards_moved: int = 0  # shards copied (or rebuilt) onto their new pods
    shards_rebuilt: int = 0  # of those, rebuilt from other blocks (old copy unreadable)
    old_copies_waiting: int = 0  # old copies waiting out the grace before deletion
    old_copies_deleted: int = 0
    passes: int = 0
    last_error: str | None = None
    meter: RateMeter = field(default_factory=lambda: RateMeter(window_s=10.0), repr=False)

    @property
    def done(self) -> bool:
        return not self.old_epochs

    def eta_s(self) -> float | None:
        rate = self.meter.rate
        if self.done:
            return 0.0
        return round(self.bytes_left / rate, 1) if rate > 1 else None

    def as_json(self) -> dict[str, Any]:
        return {
            "done": self.done, "target_epoch": self.target_epoch,
            "old_epochs": self.old_epochs, "retired_epochs": self.retired_epochs,
            "partitions_left": self.partitions_left, "partitions_moved": self.partitions_moved,
            "partitions_waiting": self.partitions_waiting,
            "bytes_left": self.bytes_left, "bytes_moved": self.bytes_moved,
            "shards_moved": self.shards_moved, "shards_rebuilt": self.shards_rebuilt,
            "old_copies_waiting": self.old_copies_waiting,
            "old_copies_deleted": self.old_copies_deleted,
            "rate_bytes_s": round(self.meter.rate, 1), "eta_s": self.eta_s(),
            "passes": self.passes, "last_error": self.last_error,
        }


@dataclass(frozen=True)
class OldCopy:
    """One shard left on the pod that held its slot before the move."""

    due: float
    pod_id: str
    partition: int
    shard: ShardId


def moved_slots(old: PlacementMap, new: PlacementMap, partition: int, width: int) -> list[int]:
    """The slots of `partition` (first `width`) whose pod differs between two maps."""
    before, after = old.pods_for(partition, width), new.pods_for(partition, width)
    return [i for i in range(width) if before[i] != after[i]]


class Rebalancer:
    def __init__(
        self,
        store: Store,
        pods: MaintenancePods,
        topology: Topology,
        config: ObjectConfig,
        settings: RebalanceSettings | None = None,
        health: PodHealth | None = None,
    ) -> None:
        self._store = store
        self._pods = pods
        self._topology = topology
        self._config = config
        self.settings = settings or RebalanceSettings()
        self._health = health or PodHealth(config)
        self._throttle = Throttle(self.settings.rate_bytes_s)
        self._cpu = CpuPool(1)
        self._old_copies: list[OldCopy] = []
        self._seen_epochs: set[int] = set()
        self.progress = RebalanceProgress()

    def close(self) -> None:
        self._cpu.close()

    # --- the loop ------------------------------------------------------------------------
    async def run(self, stop_event: asyncio.Event) -> None:
        """Rebalance until `stop_event` is set; a pass that moved something is followed
        by another at once."""
        while not stop_event.is_set():
            moved = 0
            try:
                moved = await self.rebalance_once()
            except asyncio.CancelledError:
                raise
            except NoPlacementMap:
                pass  # a gateway waiting for its first pods: nothing to move yet
            except Exception as exc:
                self.progress.last_error = repr(exc)[:200]
                log.exception("rebalance pass failed")
            if moved:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.interval_s):
                    await stop_event.wait()

    async def rebalance_once(self, now: float | None = None) -> int:
        """One pass: delete old copies whose grace is over, then move every partition
        that pins an older epoch. Returns the partitions re-pinned."""
        await self.delete_old_copies(now)
        await self._topology.refresh()
        target = self._topology.current
        in_use = await self._store.epochs_in_use()
        self._note_epochs(in_use, target.epoch)
        old = sorted(e for e in in_use if e < target.epoch)
        if not old:
            await self._retire(target.epoch)
            return 0
        self.progress.passes += 1
        self.progress.partitions_waiting = 0
        plan = await self._plan(old, target)
        limit = asyncio.Semaphore(self.settings.concurrency)

        async def one(partition: int) -> int:
            async with limit:
                try:
                    return await self._move_partition(partition, target)
                except Exception as exc:  # one partition must not stall the others
                    self.progress.last_error = f"partition {partition}: {exc!r}"[:200]
                    log.exception("rebalance of partition %d failed", partition)
                    return 0

        moved = sum(await asyncio.gather(*(one(p) for p in sorted(plan))))
        self._note_epochs(await self._store.epochs_in_use(), target.epoch)
        await self._retire(target.epoch)
        return moved

    async def _retire(self, target: int) -> None:
        """Epochs under the target that nothing pins any more are retired in the store:
        from then on no gateway can write under them (Store.retire_epochs), however
        stale its map."""
        retired = await self._store.retire_epochs(target)
        if retired:
            log.info("placement epochs %s retired (current %d)", retired, target)

    async def look(self, target: int) -> None:
        """Updates the epochs pinned (for progress) without moving anything."""
        self._note_epochs(await self._store.epochs_in_use(), max(target,
                          self.progress.target_epoch or 0))

    def _note_epochs(self, in_use: set[int], target: int) -> None:
        p = self.progress
        p.target_epoch = target
        p.old_epochs = sorted(e for e in in_use if e < target)
        self._seen_epochs |= in_use
        p.retired_epochs = sorted(e for e in self._seen_epochs if e not in in_use)
        if p.done:
            p.partitions_left = p.bytes_left = p.partitions_waiting = 0

    # --- planning --------------------------------------------------------------------------
    async def _plan(self, old: list[int], target: PlacementMap) -> dict[int, list[PinnedPart]]:
        """partition -> its parts pinned to an older epoch; sets partitions/bytes left."""
        maps = {e: await self._topology.get_map(e) for e in old}
        count = max([target.partition_count, *(m.partition_count for m in maps.values())])
        limit = asyncio.Semaphore(self.settings.scan_concurrency)

        async def scan(partition: int) -> tuple[int, list[PinnedPart]]:
            async with limit:
                parts = await self._store.partition_parts(partition)
            return partition, [p for p in parts if p.epoch < target.epoch]

        found = dict(await asyncio.gather(*(scan(p) for p in range(count))))
        plan = {p: parts for p, parts in found.items() if parts}
        left = 0
        for partition, parts in plan.items():
            for part in parts:
                if part.kind != "pending":
                    slots = moved_slots(maps[part.epoch], target, partition, part.width)
                    left += len(slots) * _shard_size(part)
        self.progress.partitions_left = len(plan)
        self.progress.bytes_left = left
        return plan

    # --- one partition ----------------------------------------------------------------------
    async def _move_partition(self, partition: int, target: PlacementMap) -> int:
        """Copies and re-pins until no record of `partition` pins an older epoch (at
        most a few rounds: each round only finds writes that committed meanwhile)."""
        repinned = 0
        for _round in range(3):
            parts = [p for p in await self._store.partition_parts(partition)
                     if p.epoch < target.epoch]
            if not parts:
                break
            if any(p.kind == "pending" for p in parts):
                self.progress.partitions_waiting += 1
                return repinned
            by_epoch: dict[int, list[PinnedPart]] = {}
            for part in parts:
                by_epoch.setdefault(part.epoch, []).append(part)
            try:
                for epoch, group in sorted(by_epoch.items()):
                    old_map = await self._topology.get_map(epoch)
                    copied: list[OldCopy] = []
                    for part in group:
                        copied.extend(await self._move_part(part, old_map, target))
                    await self._store.repin_partition(
                        partition, epoch, target.epoch,
                        copied={(p.object_id, p.shard_tag) for p in group},
                    )
                    due = time.time() + self.settings.grace_s
                    self._old_copies.extend(
                        OldCopy(due, c.pod_id, c.partition, c.shard) for c in copied
                    )
            except PartitionChanged as exc:
                # A part was written there since we read it (an upload's next part
                # goes to the upload's epoch): read the partition again and copy it too.
                log.info("rebalance: %s; reading it again", exc)
                continue
            repinned = 1
        self.progress.partitions_moved += repinned
        self.progress.partitions_left = max(0, self.progress.partitions_left - repinned)
        self.progress.old_copies_waiting = len(self._old_copies)
        return repinned

    async def _move_part(
        self, part: PinnedPart, old_map: PlacementMap, target: PlacementMap
    ) -> list[OldCopy]:
        """Puts the moved slots of one part on their new pods, verified; returns the old
        copies. Raises when a slot could not be moved (the partition waits)."""
        slots = moved_slots(old_map, target, part.partition, part.width)
        if not slots:
            return []
        before = old_map.pods_for(part.partition, part.width)
        after = target.pods_for(part.partition, part.width)
        await self._topology.ensure_fresh()
        failed: list[int] = []
        for slot in slots:
            if not await self._copy(part, slot, before[slot], after[slot]):
                failed.append(slot)
        if failed:
            await self._rebuild(part, after, failed)
        self._now_home({(after[s], _shard(part, s)) for s in slots})
        return [OldCopy(0.0, before[s], part.partition, _shard(part, s)) for s in slots]

    def _now_home(self, homes: set[tuple[str, ShardId]]) -> None:
        """Forgets the old copies (pod id, shard) that a move just made homes again: a
        slot moving back to a pod within the grace (6 -> 8 -> 6 pods) reuses the copy still
        there, which must then outlive the grace of the move that left it."""
        kept = [c for c in self._old_copies if (c.pod_id, c.shard) not in homes]
        if len(kept) != len(self._old_copies):
            self._old_copies = kept
            self.progress.old_copies_waiting = len(kept)

    def _url(self, pod_id: str) -> str:
        url = self._topology.url_of(pod_id)
        if url is None:
            raise PodError(f"pod {pod_id} has no URL")
        return url

    async def _copy(self, part: PinnedPart, slot: int, source: str, dest: str) -> bool:
        """Streams one shard from its old pod to its new one; True once the new pod holds
        a verified copy. False: the old copy is unreadable or bad (rebuild it)."""
        shard = _shard(part, slot)
        length = _shard_size(part)
        dest_url = self._url(dest)
        if await self._verified(part, dest_url, shard):
            return True  # copied before a crash or an earlier failed round
        src_url = self._topology.url_of(source)
        if src_url is None:
            return False
        try:
            body = self._chunks(src_url, part.partition, shard, length)
            # No overall timeout: the throttle may stretch a large copy; every ranged
            # read has one, and the pod client cuts off a pod that stops taking bytes.
            await self._pods.put_shard(dest_url, part.partition, shard, body, length)
        except ShardExists:
            pass  # a copy from an unfinished round: verified just below
        except PodError as exc:
            log.info("rebalance: copying %s from %s failed: %s", shard.name, source, exc)
            with contextlib.suppress(PodError):
                await self._pods.delete_shard(dest_url, part.partition, shard)
            return False
        if not await self._verified(part, dest_url, shard):
            log.warning("rebalance: copy of %s from %s is bad; rebuilding", shard.name, source)
            await call(self._pods.delete_shard(dest_url, part.partition, shard),
                       self._config.pod_timeout_s, dest_url)
            return False
        self.progress.shards_moved += 1
        self._paid(length)
        return True

    async def _chunks(
        self, url: str, partition: int, shard: ShardId, length: int
    ) -> AsyncIterator[bytes]:
        step = self.settings.chunk_bytes
        for offset in range(0, length, step):
            size = min(step, length - offset)
            piece = await call(self._pods.read_shard(url, partition, shard, offset, size),
                               self._config.pod_timeout_s, url)
            await self._throttle.take(2 * len(piece))  # read from one pod, written to another
            yield piece

    async def _verified(self, part: PinnedPart, url: str, shard: ShardId) -> bool:
        params = ErasureParams(part.k, part.m, part.block_size)
        try:
            result = await call(self._pods.verify_shard(url, part.partition, shard),
                                self._config.pod_timeout_s, url)
        except PodError:
            return False
        return result.ok and result.frames == params.stripe_count(part.size)

    async def _rebuild(self, part: PinnedPart, after: tuple[str, ...], slots: list[int]) -> None:
        """Rebuilds `slots` on their new pods from k blocks of the new layout (the slots
        that kept their pod, and the ones already copied)."""
        urls = [self._topology.url_of(pod_id) for pod_id in after]
        rebuilder = PartRebuilder(
            self._pods, urls, part, slots, cpu=self._cpu, throttle=self._throttle,
            config=self._config, health=self._health, batch_bytes=self.settings.chunk_bytes,
        )
        try:
            result = await rebuilder.run()
        except NotEnoughBlocks as exc:
            raise PodError(f"{part.object_id}.{part.shard_tag}: cannot rebuild: {exc}") from exc
        if result.failed:
            raise PodError(f"{part.object_id}.{part.shard_tag}: not rebuilt: {result.failed}")
        self.progress.shards_moved += len(result.stored)
        self.progress.shards_rebuilt += len(result.stored)
        self._paid(_shard_size(part) * len(result.stored))

    def _paid(self, written: int) -> None:
        p = self.progress
        p.bytes_moved += written
        p.bytes_left = max(0, p.bytes_left - written)
        p.meter.add(written)

    # --- old copies -----------------------------------------------------------------------
    async def delete_old_copies(self, now: float | None = None) -> int:
        """Deletes the old copies whose grace is over; a pod that does not answer keeps
        its copies listed for the next pass. Returns the copies deleted."""
        now = time.time() if now is None else now
        due = [c for c in self._old_copies if c.due <= now]
        if not due:
            return 0
        await self._topology.ensure_fresh()

        async def one(copy: OldCopy) -> bool:
            url = self._topology.url_of(copy.pod_id)
            if url is None:
                return True  # the pod is gone, and its volume with it
            try:
                await call(self._pods.delete_shard(url, copy.partition, copy.shard),
                           self._config.pod_timeout_s, url)
            except PodError as exc:
                log.info("rebalance: deleting old copy %s on %s failed: %s",
                         copy.shard.name, copy.pod_id, exc)
                return False
            return True

        outcomes = await asyncio.gather(*(one(c) for c in due))
        gone = {id(c) for c, ok in zip(due, outcomes, strict=True) if ok}
        self._old_copies = [c for c in self._old_copies if id(c) not in gone]
        self.progress.old_copies_deleted += len(gone)
        self.progress.old_copies_waiting = len(self._old_copies)
        return len(gone)

    def holds_old_copy(self, pod_id: str, shard: ShardId) -> bool:
        """True while this old copy waits out its grace (the scrubber leaves it alone)."""
        return any(c.pod_id == pod_id and c.shard == shard for c in self._old_copies)

    def holds_old_copies(self, pod_id: str) -> bool:
        """True while old copies on `pod_id` wait out their grace."""
        return any(c.pod_id == pod_id for c in self._old_copies)


def _shard(part: PinnedPart, slot: int) -> ShardId:
    return ShardId(part.object_id, part.shard_tag, slot)


def _shard_size(part: PinnedPart) -> int:
    if part.kind == "pending" or part.size < 0:
        return 0
    return ErasureParams(part.k, part.m, part.block_size).shard_size(part.size)
