"""Failure-domain caps and fair shares: what a good map must look like.

The builder aims at these numbers and the checker verifies against them, so the
two can never disagree about what "balanced" or "spread" means.

Rules:
- Domains nest zone > node > pod. A pod with an empty node is its own node; all
  pods with an empty zone share one zone. Only pods with weight > 0 count.
- Per partition, a zone holds at most `zone_cap` slots: ceil(width / zones),
  raised only as far as needed when small zones cannot take their part. A node
  of zone z holds at most `node_cap[z]`: ceil(width / nodes), raised only as far
  as needed for the zone to reach its own cap (zones win over nodes).
- Fair shares are weight-proportional, water-filled down the hierarchy so no
  domain is asked for more than its caps allow (a pod holds <= 1 slot of a
  partition). Exact rationals: no float rounding decides an integer target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from kurastore.placement._map import PodSpec
from kurastore.placement.errors import PlacementError

__all__ = ["NodeKey", "Targets", "compute_targets", "fair_shares", "water_fill"]

NodeKey = tuple[str, str, str]  # (zone, node, pod_id if the node is unnamed else "")


@dataclass(frozen=True)
class Targets:
    """Caps and fair shares of one cluster shape (active pods only)."""

    width: int
    partition_count: int
    zone_of: dict[str, str]  # pod_id -> zone
    node_of: dict[str, NodeKey]  # pod_id -> node key
    zone_cap: int  # max slots of one partition in one zone
    node_cap: dict[NodeKey, int]  # max slots of one partition on one node
    fair: dict[str, Fraction]  # pod_id -> fair number of slots in the whole map

    def bounds(self, pod_id: str) -> tuple[int, int]:
        """(floor, ceil) of a pod's fair share: a balanced map keeps it within."""
        share = self.fair[pod_id]
        return math.floor(share), math.ceil(share)


def node_key(pod: PodSpec) -> NodeKey:
    return (pod.zone, pod.node, "") if pod.node else (pod.zone, "", pod.pod_id)


def water_fill(total: Fraction, items: Sequence[tuple[Fraction, Fraction]]) -> list[Fraction]:
    """Split `total` in proportion to weights, no item above its cap.

    `items` are (weight > 0, cap) pairs with sum(caps) >= total. Items whose
    proportional share would exceed their cap get exactly the cap; the rest
    share what remains in proportion to their weights.
    """
    order = sorted(range(len(items)), key=lambda i: items[i][1] / items[i][0])
    shares = [Fraction(0)] * len(items)
    left, weight_left = total, sum((w for w, _ in items), Fraction(0))
    for pos, i in enumerate(order):
        weight, cap = items[i]
        if cap * weight_left <= left * weight:
            shares[i] = cap
            left -= cap
            weight_left -= weight
            continue
        for j in order[pos:]:
            shares[j] = left * items[j][0] / weight_left
        break
    return shares


def _smallest_cap(start: int, sizes: Sequence[int], need: int) -> int:
    """Smallest cap >= start with sum(min(cap, size)) >= need (sizes sum >= need)."""
    cap = start
    while sum(min(cap, size) for size in sizes) < need:
        cap += 1
    return cap


def compute_targets(pods: Sequence[PodSpec], width: int, partition_count: int) -> Targets:
    """Caps and fair shares for `pods`; PlacementError if fewer than `width` are active."""
    active = sorted((p for p in pods if p.weight > 0), key=lambda p: p.pod_id)
    if width < 1:
        raise PlacementError(f"width must be >= 1, got {width}")
    if len(active) < width:
        raise PlacementError(
            f"width {width} needs at least {width} pods with weight > 0, got {len(active)}"
        )
    zones: dict[str, dict[NodeKey, list[PodSpec]]] = {}
    for pod in active:
        zones.setdefault(pod.zone, {}).setdefault(node_key(pod), []).append(pod)
    zone_names = sorted(zones)
    node_count = sum(len(nodes) for nodes in zones.values())

    zone_size = [sum(len(ps) for ps in zones[z].values()) for z in zone_names]
    zone_cap = _smallest_cap(math.ceil(width / len(zone_names)), zone_size, width)
    node_start = math.ceil(width / node_count)
    node_cap: dict[NodeKey, int] = {}
    for z, size in zip(zone_names, zone_size, strict=True):
        sizes = [len(ps) for ps in zones[z].values()]
        cap = _smallest_cap(node_start, sizes, min(zone_cap, size))
        node_cap.update((key, cap) for key in zones[z])

    # Replicas per partition, water-filled zone -> node -> pod, then scaled to slots.
    def weight(ps: Sequence[PodSpec]) -> Fraction:
        return sum((Fraction(p.weight) for p in ps), Fraction(0))

    fair: dict[str, Fraction] = {}
    zone_items = [
        (sum((weight(ps) for ps in zones[z].values()), Fraction(0)), Fraction(min(zone_cap, n)))
        for z, n in zip(zone_names, zone_size, strict=True)
    ]
    for z, zone_share in zip(zone_names, water_fill(Fraction(width), zone_items), strict=True):
        keys = sorted(zones[z])
        node_items = [
            (weight(zones[z][k]), Fraction(min(node_cap[k], len(zones[z][k])))) for k in keys
        ]
        for k, node_share in zip(keys, water_fill(zone_share, node_items), strict=True):
            members = zones[z][k]
            pod_items = [(Fraction(p.weight), Fraction(1)) for p in members]
            for pod, share in zip(members, water_fill(node_share, pod_items), strict=True):
                fair[pod.pod_id] = share * partition_count
    return Targets(
        width=width,
        partition_count=partition_count,
        zone_of={p.pod_id: p.zone for p in active},
        node_of={p.pod_id: node_key(p) for p in active},
        zone_cap=zone_cap,
        node_cap=node_cap,
        fair=fair,
    )


def fair_shares(pods: Sequence[PodSpec], width: int, partition_bits: int) -> dict[str, float]:
    """Slots each pod should hold in a map of these pods (0.0 for draining pods).

    Weight-proportional, except where failure-domain caps forbid it; check_map
    measures balance against exactly these numbers.
    """
    fair = compute_targets(pods, width, 1 << partition_bits).fair
    return {p.pod_id: float(fair.get(p.pod_id, 0)) for p in pods}
