"""Misplaced copies: shard files of an object that a record still pins, lying on a pod
that no placement gives that block any more.

They are what a rebalance leaves behind when the gateway dies between re-pinning a
partition and deleting the old copies after their grace (the rebalancer keeps that
list in memory only). The collector cannot take them: its ShardRef deletes every slot
of a map, and the slots that kept their pod serve the new epoch. The scrubber finds
them (it lists the pods and reads the pins anyway) and deletes them one by one.

Rules:
- A copy is in place when some pin of its (object id, shard tag) gives its block index
  to its pod in the pin's epoch or in any later one up to the newest map: the home
  the record names, and any copy a rebalancer (maybe still running) made toward a
  newer epoch before re-pinning.
- An object id with a pending write is left alone (its shard tags are not all known).
- A copy younger than the grace is left alone: it may be a copy toward an epoch newer
  than the maps the caller knew when it listed the pods.
- A copy of a pinned block is deleted only when the pod the record names listed that
  block too: otherwise it may be the last copy (a re-pin that outran its copy lost
  acknowledged parts that way once), and the scrub queues the home for healing instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from kurastore.metadata import PinnedPart
from kurastore.storage import ShardId, ShardInfo

# (epoch, partition, width) -> the pods of that partition in that epoch's map, slot order;
# None when the map is unknown (a copy is then never called misplaced by it).
Owners = Callable[[int, int, int], tuple[str, ...] | None]


def find_misplaced(
    held: Mapping[str, Mapping[str, ShardInfo] | None],
    parts: list[PinnedPart],
    owners: Owners,
    newest_epoch: int,
    cutoff: float,
) -> list[tuple[str, ShardInfo]]:
    """(pod id, shard) of every misplaced copy among `held` (pod id -> its shards of one
    partition) given `parts`, the pins of that partition; see the module rules."""
    pending = {p.object_id for p in parts if p.kind == "pending"}
    pins: dict[tuple[str, str], list[PinnedPart]] = {}
    for part in parts:
        if part.kind != "pending":
            pins.setdefault((part.object_id, part.shard_tag), []).append(part)
    pinned_ids = {oid for oid, _tag in pins} | pending
    found: list[tuple[str, ShardInfo]] = []
    for pod_id, shards in held.items():
        for info in (shards or {}).values():
            shard = info.shard
            if (shard.object_id not in pinned_ids or shard.object_id in pending
                    or info.mtime >= cutoff):
                continue  # an orphan (the collector's) or not to be judged now
            homes = pins.get((shard.object_id, shard.shard_tag), [])
            if any(_placed(part, shard.index, pod_id, owners, newest_epoch)
                   for part in homes):
                continue
            if homes and not any(_home_holds(part, shard, held, owners) for part in homes):
                continue  # maybe the only copy left: kept; the scrub queues the home's heal
            found.append((pod_id, info))
    return found


def _home_holds(part: PinnedPart, shard: ShardId,
                held: Mapping[str, Mapping[str, ShardInfo] | None], owners: Owners) -> bool:
    """Whether the pod the record names for this block listed it."""
    row = owners(part.epoch, part.partition, part.width)
    if row is None or shard.index >= len(row):
        return False
    listing = held.get(row[shard.index])
    return listing is not None and shard.name in listing


def _placed(part: PinnedPart, index: int, pod_id: str, owners: Owners, newest: int) -> bool:
    if index >= part.width:
        return False
    for epoch in range(part.epoch, max(newest, part.epoch) + 1):
        row = owners(epoch, part.partition, part.width)
        if row is None and epoch == part.epoch:
            return True  # the record's own map is unknown: judge nothing
        if row is not None and row[index] == pod_id:
            return True
    return False
