"""find_misplaced: which copies of pinned shards no placement gives their pod."""

from __future__ import annotations

from kurastore.gateway.maintenance.misplaced import find_misplaced
from kurastore.metadata import PinnedPart
from kurastore.storage import ShardId, ShardInfo

OID = "a" * 32
# epoch 1: slots on p0..p2; epoch 2 (after adding p3): slot 1 moved to p3.
MAPS = {1: ("p0", "p1", "p2"), 2: ("p0", "p3", "p2")}


def owners(epoch: int, partition: int, width: int) -> tuple[str, ...] | None:
    return MAPS.get(epoch)


def part(epoch: int, kind: str = "version", tag: str = "0") -> PinnedPart:
    return PinnedPart(OID, tag, 7, epoch, 3, 2, 1, 1024, 2048, kind, 0.0)


def info(index: int, tag: str = "0", mtime: float = 0.0) -> ShardInfo:
    return ShardInfo(7, ShardId(OID, tag, index), 100, mtime)


def held(**pods: list[ShardInfo]) -> dict[str, dict[str, ShardInfo]]:
    return {pod: {i.shard.name: i for i in infos} for pod, infos in pods.items()}


def test_an_old_copy_left_after_the_repin_is_misplaced() -> None:
    shards = held(p0=[info(0)], p1=[info(1)], p2=[info(2)], p3=[info(1)])
    found = find_misplaced(shards, [part(2)], owners, newest_epoch=2, cutoff=10.0)
    assert [(pod, i.shard.index) for pod, i in found] == [("p1", 1)]


def test_a_copy_toward_a_newer_epoch_is_kept_before_the_repin() -> None:
    shards = held(p0=[info(0)], p1=[info(1)], p2=[info(2)], p3=[info(1)])
    assert find_misplaced(shards, [part(1)], owners, newest_epoch=2, cutoff=10.0) == []


def test_young_copies_pending_writes_and_orphans_are_not_judged() -> None:
    young = held(p1=[info(1, mtime=20.0)])
    assert find_misplaced(young, [part(2)], owners, 2, cutoff=10.0) == []
    pending = held(p1=[info(1)])
    assert find_misplaced(pending, [part(2), part(2, "pending", "")], owners, 2, 10.0) == []
    assert find_misplaced(pending, [], owners, 2, cutoff=10.0) == []  # the collector's


def test_a_shard_tag_no_record_pins_is_misplaced() -> None:
    shards = held(p0=[info(0, tag="p1-old")])
    found = find_misplaced(shards, [part(2, tag="p1-new")], owners, 2, cutoff=10.0)
    assert [(pod, i.shard.shard_tag) for pod, i in found] == [("p0", "p1-old")]


def test_an_old_copy_whose_home_lacks_the_block_is_kept() -> None:
    # The record says epoch 2 (slot 1 on p3), but p3 never got the block: the copy on p1
    # may be the last one, so it stays until the home is healed.
    shards = held(p0=[info(0)], p1=[info(1)], p2=[info(2)], p3=[])
    assert find_misplaced(shards, [part(2)], owners, newest_epoch=2, cutoff=10.0) == []
    unknown = held(p0=[info(0)], p1=[info(1)], p2=[info(2)])  # p3 did not answer
    assert find_misplaced(unknown, [part(2)], owners, newest_epoch=2, cutoff=10.0) == []
