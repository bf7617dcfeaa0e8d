"""Placement benchmark: map build time, balance and movement. Run `python bench/placement.py`.

Prints (1) the time to build a 4096-partition map for 6/50/200/1000 pods (median
of several runs, fresh build, 3 zones); (2) balance and movement for several
cluster shapes: worst deviation of a pod's slot count from its fair share, and
for adding one pod of average weight, removing one pod and doubling one pod's
weight, the slots moved against the ideal (the new pod's fair share, the
removed pod's slots, the change of the pod's fair share); (3) the balance
reached at 1000 pods for 2^12..2^14 partitions, which sets DEFAULT_PARTITION_BITS.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from kurastore.placement import (
    DEFAULT_PARTITION_BITS,
    PlacementMap,
    PodSpec,
    build_map,
    check_map,
    diff,
    fair_shares,
)


def cluster(n: int, zones: int, weights: tuple[float, ...] = (1.0,)) -> list[PodSpec]:
    """n pods spread round-robin over zones, weights cycling through `weights`."""
    return [
        PodSpec(
            f"pod-{i:04d}", zone=f"zone-{i % zones}", weight=weights[(i // zones) % len(weights)]
        )
        for i in range(n)
    ]


def max_deviation(pmap: PlacementMap) -> float:
    """Largest |slots - fair| / fair over the map's pods."""
    fair = fair_shares(pmap.pods, pmap.width, pmap.partition_bits)
    return max(
        abs(len(pmap.partitions_of(pod_id)) - share) / share
        for pod_id, share in fair.items()
        if share > 0
    )


def timed(pods: list[PodSpec], width: int, bits: int, runs: int) -> tuple[float, PlacementMap]:
    times, pmap = [], None
    for _ in range(runs):
        start = time.perf_counter()
        pmap = build_map(pods, width, partition_bits=bits)
        times.append(time.perf_counter() - start)
    assert pmap is not None
    return statistics.median(times), pmap


def movement(pods: list[PodSpec], width: int, bits: int) -> dict[str, str]:
    """Balance and movement figures of one cluster shape."""
    base = build_map(pods, width, partition_bits=bits)
    assert not check_map(base), check_map(base)
    row = {"balance": f"{max_deviation(base):.2%}"}

    average = sum(p.weight for p in pods) / len(pods)
    added = PodSpec("pod-new", zone=pods[0].zone, weight=average)
    grown = build_map([*pods, added], width, partition_bits=bits, previous=base)
    ideal = fair_shares(grown.pods, width, bits)["pod-new"]
    row["add"] = f"{len(diff(base, grown)) / ideal:.3f}"

    gone = pods[len(pods) // 2]
    shrunk = build_map(
        [p for p in pods if p is not gone], width, partition_bits=bits, previous=base
    )
    row["remove"] = f"{len(diff(base, shrunk)) / len(base.partitions_of(gone.pod_id)):.3f}"

    heavy = pods[len(pods) // 3]
    reweighted = [
        PodSpec(p.pod_id, p.zone, p.node, p.weight * 2) if p is heavy else p for p in pods
    ]
    changed = build_map(reweighted, width, partition_bits=bits, previous=base)
    moves = diff(base, changed)
    wanted = fair_shares(changed.pods, width, bits)[heavy.pod_id]
    change = abs(wanted - len(base.partitions_of(heavy.pod_id)))
    row["weight"] = f"{len(moves) / change:.3f}"
    row["others"] = str(sum(heavy.pod_id not in (m.from_pod, m.to_pod) for m in moves))
    worst = max(max_deviation(m) for m in (grown, shrunk, changed))
    row["after"] = f"{worst:.2%}"
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per timing (median)")
    args = parser.parse_args()
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")

    print("\n1. build time, 4096 partitions, 3 zones, fresh map (median)")
    print(f"{'pods':>6} {'width 6':>10} {'width 11':>10}")
    for n in (6, 50, 200, 1000):
        cells = []
        for width in (6, 11):
            if n < width:
                cells.append("-")
                continue
            runs = args.runs if n < 1000 else max(1, args.runs // 2)
            seconds, _ = timed(cluster(n, 3), width, 12, runs)
            cells.append(f"{seconds * 1000:.0f} ms")
        print(f"{n:>6} {cells[0]:>10} {cells[1]:>10}")

    print("\n2. balance and movement, 4096 partitions (moved slots / ideal; 1.000 = minimum)")
    print(
        f"{'pods':>5} {'zones':>5} {'width':>5} {'weights':>9} {'balance':>8} "
        f"{'add':>6} {'remove':>6} {'weight':>6} {'others':>6} {'after':>7}"
    )
    shapes = [
        (8, 1, 6, (1.0,)),
        (12, 3, 6, (1.0,)),
        (50, 3, 6, (1.0,)),
        (50, 5, 11, (1.0, 2.0)),
        (200, 1, 3, (1.0,)),
        (200, 3, 6, (1.0, 2.0, 4.0)),
        (200, 4, 11, (1.0,)),
        (24, 3, 11, (1.0,)),
        (1000, 5, 6, (1.0,)),
    ]
    for n, zones, width, weights in shapes:
        row = movement(cluster(n, zones, weights), width, 12)
        label = "/".join(f"{w:g}" for w in weights)
        print(
            f"{n:>5} {zones:>5} {width:>5} {label:>9} {row['balance']:>8} {row['add']:>6} "
            f"{row['remove']:>6} {row['weight']:>6} {row['others']:>6} {row['after']:>7}"
        )
    print(
        "  balance: worst |slots - fair| / fair of a fresh map; after: the same after each change"
    )
    print("  others: moved slots of the weight change that neither leave nor reach the pod")
    print("  24 pods, 8+3 over 3 zones: a zone holds 3.67 of at most 4 slots per partition; near")
    print("  that cap, growing a zone forces moves between other pods (see test_builder.py)")

    print(f"\n3. partition count at 1000 pods, 5 zones (default: 2^{DEFAULT_PARTITION_BITS})")
    print(f"{'bits':>4} {'width':>5} {'slots/pod':>9} {'balance':>8} {'build':>8} {'json':>8}")
    for bits in (12, 13, 14):
        for width in (3, 6, 11):
            seconds, pmap = timed(cluster(1000, 5), width, bits, 1)
            size = len(pmap.to_json())
            per_pod = (width << bits) / 1000
            print(
                f"{bits:>4} {width:>5} {per_pod:>9.1f} {max_deviation(pmap):>8.2%} "
                f"{seconds:>7.2f}s {size / 1024:>6.0f}KB"
            )


if __name__ == "__main__":
    main()
