"""check_map: every invariant a placement map must keep, as readable violations.

Rules: the checker recomputes caps and fair shares from the map's own pods
(`_targets`, the same rules build_map aims at) and never trusts the builder.
It reports, never raises: an empty list means the map is fit to serve. Each
kind of violation is listed at most `_PER_KIND` times, then counted.
"""

from __future__ import annotations

from kurastore.placement._map import PlacementMap
from kurastore.placement._targets import compute_targets
from kurastore.placement.errors import PlacementError

__all__ = ["BALANCE_TOLERANCE", "check_map"]

# A pod's slot count may differ from its fair share by 5%, or by one slot when
# the share is under 20 slots (no integer count can do better there).
BALANCE_TOLERANCE = 0.05
_PER_KIND = 20


def check_map(pmap: PlacementMap) -> list[str]:
    """Violations of distinct pods, failure domains and balance; [] when the map is sound."""
    try:
        targets = compute_targets(pmap.pods, pmap.width, pmap.partition_count)
    except PlacementError as exc:
        return [f"pods cannot fill the map: {exc}"]
    found: dict[str, list[str]] = {}

    def report(kind: str, message: str) -> None:
        found.setdefault(kind, []).append(message)

    counts = dict.fromkeys(targets.fair, 0)
    for partition, row in enumerate(pmap.assignment):
        if len(set(row)) != len(row):
            report("distinct", f"partition {partition} names a pod twice: {row}")
        zones: dict[str, int] = {}
        nodes: dict[tuple[str, str, str], int] = {}
        for pod_id in row:
            if pod_id not in counts:
                report("inactive", f"partition {partition} uses pod {pod_id!r} of weight 0")
                continue
            counts[pod_id] += 1
            zone, node = targets.zone_of[pod_id], targets.node_of[pod_id]
            zones[zone] = zones.get(zone, 0) + 1
            nodes[node] = nodes.get(node, 0) + 1
        for zone, n in zones.items():
            if n > targets.zone_cap:
                report(
                    "zone",
                    f"partition {partition}: zone {zone!r} holds {n} slots "
                    f"(at most {targets.zone_cap})",
                )
        for node, n in nodes.items():
            if n > targets.node_cap[node]:
                report(
                    "node",
                    f"partition {partition}: node {node[1] or node[2]!r} of zone "
                    f"{node[0]!r} holds {n} slots (at most {targets.node_cap[node]})",
                )
    for pod_id, fair in targets.fair.items():
        deviation = counts[pod_id] - fair
        if abs(deviation) > max(fair * BALANCE_TOLERANCE, 1):
            report(
                "balance",
                f"pod {pod_id!r} holds {counts[pod_id]} slots, fair share {float(fair):.1f} "
                f"({float(deviation / fair):+.1%} off, tolerance {BALANCE_TOLERANCE:.0%})",
            )
    violations: list[str] = []
    for messages in found.values():
        violations.extend(messages[:_PER_KIND])
        if len(messages) > _PER_KIND:
            violations.append(f"... and {len(messages) - _PER_KIND} more like the above")
    return violations
