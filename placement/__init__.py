"""kurastore.placement: which pods hold which partition (pure, stdlib only, no I/O)."""

from kurastore.placement._builder import DEFAULT_PARTITION_BITS, build_map
from kurastore.placement._map import Move, PlacementMap, PodSpec
from kurastore.placement.errors import InvalidMap, InvalidObjectId, PlacementError

__all__ = [
    "DEFAULT_PARTITION_BITS",
    "InvalidMap",
    "InvalidObjectId",
    "Move",
    "PlacementError",
    "PlacementMap",
    "PodSpec",
    "build_map",
]
