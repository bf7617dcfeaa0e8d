"""diff: the slot-level move plan between two placement maps.

Rules: a slot moves when its pod differs between the maps; nothing else does.
Both maps must cut objects into the same partitions (same partition_bits):
otherwise every object changes partition and no slot plan describes that.
Slots beyond the old width come from nobody (from_pod None); slots beyond the
new width are simply no longer used and move nowhere.
"""

from __future__ import annotations

from kurastore.placement._map import Move, PlacementMap
from kurastore.placement.errors import PlacementError

__all__ = ["diff"]


def diff(old: PlacementMap, new: PlacementMap) -> list[Move]:
    """Moves taking `old` to `new`, by partition then slot."""
    if old.partition_bits != new.partition_bits:
        raise PlacementError(
            f"cannot diff maps with partition_bits {old.partition_bits} and "
            f"{new.partition_bits}: every object changes partition"
        )
    moves: list[Move] = []
    for partition, (before, after) in enumerate(zip(old.assignment, new.assignment, strict=True)):
        if before == after:
            continue
        for slot, to_pod in enumerate(after):
            from_pod = before[slot] if slot < len(before) else None
            if from_pod != to_pod:
                moves.append(Move(partition, slot, from_pod, to_pod))
    return moves
