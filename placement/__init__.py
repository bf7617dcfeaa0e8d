"""kurastore.placement: which pods hold which partition (pure, stdlib only, no I/O).

An object id maps to one of 2^P partitions (`PlacementMap.partition_of`); the
placement map gives each partition an ordered list of `width` distinct pods
spread over zones and nodes, balanced by weight (`build_map`). Maps are data:
numbered by epoch, serialized as versioned JSON, compared slot by slot with
`diff`, and verified with `check_map`.
"""

from kurastore.placement._builder import DEFAULT_PARTITION_BITS, KEEP_SLACK, build_map
from kurastore.placement._check import BALANCE_TOLERANCE, check_map
from kurastore.placement._diff import diff
from kurastore.placement._map import MAP_FORMAT, MAX_PARTITION_BITS, Move, PlacementMap, PodSpec
from kurastore.placement._targets import fair_shares
from kurastore.placement.errors import InvalidMap, InvalidObjectId, PlacementError

__all__ = [
    "BALANCE_TOLERANCE",
    "DEFAULT_PARTITION_BITS",
    "KEEP_SLACK",
    "MAP_FORMAT",
    "MAX_PARTITION_BITS",
    "InvalidMap",
    "InvalidObjectId",
    "Move",
    "PlacementError",
    "PlacementMap",
    "PodSpec",
    "build_map",
    "check_map",
    "diff",
    "fair_shares",
]
