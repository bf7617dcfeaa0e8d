"""build_map and check_map: determinism, failure domains, balance, minimal movement.

Expected values are computed here from the cluster itself (weight-proportional
shares, ceil(width / zones)), not taken from the library, wherever the
cluster's shape makes them well defined.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kurastore.placement import (
    PlacementError,
    PlacementMap,
    PodSpec,
    build_map,
    check_map,
    diff,
    fair_shares,
)


def examples(n: int) -> settings:
    """Bounded hypothesis runs: each example builds maps of up to 200 pods."""
    return settings(
        max_examples=n, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
    )


def zone_cluster(per_zone: int, zones: int, weights: tuple[float, ...] = (1.0,)) -> list[PodSpec]:
    return [
        PodSpec(f"pod-{z}-{i:03d}", zone=f"zone-{z}", weight=weights[i % len(weights)])
        for z in range(zones)
        for i in range(per_zone)
    ]


@st.composite
def clusters(draw: st.DrawFn, max_pods: int = 200) -> tuple[list[PodSpec], int]:
    """Random clusters: 3..max_pods pods in 1..5 zones, optional nodes and weights."""
    width = draw(st.sampled_from([3, 6, 11]).filter(lambda w: w <= max_pods))
    n = draw(st.integers(max(3, width), max_pods))
    zones = draw(st.integers(1, 5))
    per_node = draw(st.sampled_from([0, 1, 2, 3]))  # 0: no node labels
    weighted = draw(st.booleans())
    rnd = random.Random(draw(st.integers(0, 2**32)))
    pods = []
    for i in range(n):
        zone = f"z{rnd.randrange(zones)}"
        node = f"{zone}-n{i // per_node}" if per_node else ""
        weight = rnd.choice([0.5, 1.0, 2.0, 4.0]) if weighted else 1.0
        pods.append(PodSpec(f"pod-{i:03d}", zone=zone, node=node, weight=weight))
    return pods, width


def counts(pmap: PlacementMap) -> Counter[str]:
    return Counter(pod_id for row in pmap.assignment for pod_id in row)


def assert_within(pmap: PlacementMap, expected: dict[str, float], tolerance: float = 0.05) -> None:
    held = counts(pmap)
    for pod_id, share in expected.items():
        assert abs(held[pod_id] - share) <= max(tolerance * share, 1), (pod_id, held[pod_id], share)


def assert_survivors_keep_slots(old: PlacementMap, new: PlacementMap) -> None:
    for before, after in zip(old.assignment, new.assignment, strict=True):
        for slot, pod_id in enumerate(after):
            if pod_id in before[: len(after)]:  # a pod in a slot the new width still has
                assert before.index(pod_id) == slot, (before, after)


# -- determinism ---------------------------------------------------------------


def test_same_pods_in_any_order_give_the_same_map() -> None:
    pods = zone_cluster(7, 3, (1.0, 2.0))
    pmap = build_map(pods, 6, partition_bits=9)
    shuffled = pods[:]
    random.Random(7).shuffle(shuffled)
    assert build_map(shuffled, 6, partition_bits=9) == pmap
    assert pmap.epoch == 1 and pmap.pods == tuple(sorted(pods, key=lambda p: p.pod_id))


def test_map_is_pinned_across_processes_and_versions() -> None:
    # Every test run is a new process with its own str-hash seed, so this digest
    # also proves that nothing depends on hash(). Change it only on purpose: a
    # different map for the same pods moves data when operators upgrade.
    pods = [*zone_cluster(4, 3, (1.0, 3.0)), PodSpec("drained", zone="zone-0", weight=0.0)]
    pmap = build_map(pods, 6, partition_bits=8)
    grown = build_map([*pods, PodSpec("new", zone="zone-2")], 6, partition_bits=8, previous=pmap)
    digest = hashlib.sha256((pmap.to_json() + grown.to_json()).encode()).hexdigest()
    assert digest == GOLDEN_DIGEST


GOLDEN_DIGEST = "b523f7896af3885fac6efd346acd09ed6a2497f20bb7721c5693a2ad0c942a67"


# -- invariants over random clusters ----------------------------------------------


@examples(30)
@given(cluster=clusters(), bits=st.sampled_from([8, 9]))
def test_random_clusters_keep_every_invariant(
    cluster: tuple[list[PodSpec], int], bits: int
) -> None:
    pods, width = cluster
    pmap = build_map(pods, width, partition_bits=bits)
    assert check_map(pmap) == []
    zone_of = {p.pod_id: p.zone for p in pods}
    zone_sizes = Counter(p.zone for p in pods)
    zones = len(zone_sizes)
    spread = math.ceil(width / zones)
    for row in pmap.assignment:
        assert len(set(row)) == width
        per_zone = Counter(zone_of[pod_id] for pod_id in row)
        if zones >= width:
            assert max(per_zone.values()) == 1, row
        if min(zone_sizes.values()) >= spread:  # every zone can take its part
            assert max(per_zone.values()) <= spread, row
    assert_within(pmap, fair_shares(pods, width, bits))


@st.composite
def equal_clusters(draw: st.DrawFn) -> tuple[int, int, int]:
    """(pods per zone, zones, width) with 6..200 equal pods in all."""
    width = draw(st.sampled_from([3, 6, 11]))
    zones = draw(st.integers(1, 5))
    per_zone = draw(st.integers(math.ceil(max(6, width) / zones), 200 // zones))
    return per_zone, zones, width


@examples(10)
@given(shape=equal_clusters())
def test_equal_pods_balance_within_5_percent_at_4096(shape: tuple[int, int, int]) -> None:
    per_zone, zones, width = shape
    pods = zone_cluster(per_zone, zones)
    pmap = build_map(pods, width, partition_bits=12)
    assert_within(pmap, {p.pod_id: width * 4096 / len(pods) for p in pods})


@examples(6)
@given(n=st.integers(12, 200), seed=st.integers(0, 2**32), width=st.sampled_from([3, 6]))
def test_unequal_weights_are_honoured(n: int, seed: int, width: int) -> None:
    rnd = random.Random(seed)
    pods = [PodSpec(f"pod-{i:03d}", weight=rnd.choice([1.0, 2.0, 3.0, 4.0])) for i in range(n)]
    total = sum(p.weight for p in pods)
    if max(p.weight for p in pods) * width > total:  # a pod would need > 1 slot per partition
        pods = [PodSpec(p.pod_id, weight=1.0 + i % 2) for i, p in enumerate(pods)]
        total = sum(p.weight for p in pods)
    pmap = build_map(pods, width, partition_bits=12)
    assert_within(pmap, {p.pod_id: width * 4096 * p.weight / total for p in pods})


def test_nodes_are_spread_like_zones() -> None:
    # 1 zone, 8 nodes of 3 pods: a partition of width 6 uses 6 distinct nodes.
    pods = [PodSpec(f"p{i:02d}", zone="a", node=f"n{i // 3}") for i in range(24)]
    pmap = build_map(pods, 6, partition_bits=10)
    node_of = {p.pod_id: p.node for p in pods}
    assert all(len({node_of[p] for p in row}) == 6 for row in pmap.assignment)
    # 4 nodes for width 6: at most ceil(6/4) = 2 per node.
    pods = [PodSpec(f"p{i:02d}", zone="a", node=f"n{i // 5}") for i in range(20)]
    pmap = build_map(pods, 6, partition_bits=10)
    node_of = {p.pod_id: p.node for p in pods}
    assert all(max(Counter(node_of[p] for p in row).values()) == 2 for row in pmap.assignment)
    assert check_map(pmap) == []


def test_small_zone_raises_the_zone_cap_only_as_far_as_needed() -> None:
    # Zones of 1, 5, 5 pods, width 6: ceil(6/3) = 2 is impossible for the
    # lone pod's zone, so the others hold 3 at most, never more.
    pods = [PodSpec("solo", zone="a"), *zone_cluster(5, 2)]
    pmap = build_map(pods, 6, partition_bits=9)
    zone_of = {p.pod_id: p.zone for p in pods}
    for row in pmap.assignment:
        assert max(Counter(zone_of[p] for p in row).values()) <= 3
    assert check_map(pmap) == []


# -- movement ------------------------------------------------------------------


@st.composite
def movable_clusters(draw: st.DrawFn) -> tuple[list[PodSpec], int]:
    """Clusters whose caps neither start nor stop binding when one pod changes.

    Either one zone with weights 1..3 and enough pods that no pod reaches one
    slot per partition even at twice its weight; or equal zones of equal pods
    that are tight (width / zones whole: every partition holds exactly that
    many of each zone, before and after) or loose (zones well below their cap).
    Near a cap (say 8+3 over 3 zones, a zone at 3.67 of at most 4 slots per
    partition), growing a zone toward its cap forces moves between other pods:
    the cross-zone moves fit only in partitions where the zone has room. No
    algorithm meets these bounds there; bench/placement.py reports that case.
    """
    if draw(st.booleans()):
        width = draw(st.sampled_from([3, 6, 11]))
        n = draw(st.integers(6 * width, 120))
        rnd = random.Random(draw(st.integers(0, 2**32)))
        return [
            PodSpec(f"pod-{i:03d}", weight=rnd.choice([1.0, 2.0, 3.0])) for i in range(n)
        ], width
    width, zones = draw(st.sampled_from([(3, 3), (6, 2), (6, 3), (3, 4), (3, 5), (6, 4), (6, 5)]))
    tight = width % zones == 0
    per_zone = draw(st.integers(2 * (width // zones) + 1 if tight else 10, 120 // zones))
    return zone_cluster(per_zone, zones), width


MOVE_BITS = 11


@examples(8)
@given(cluster=movable_clusters())
def test_adding_a_pod_moves_at_most_115_percent_of_its_share(
    cluster: tuple[list[PodSpec], int],
) -> None:
    pods, width = cluster
    old = build_map(pods, width, partition_bits=MOVE_BITS)
    average = sum(p.weight for p in pods) / len(pods)
    new_pod = PodSpec("pod-new", zone=pods[0].zone, weight=average)
    new = build_map([*pods, new_pod], width, partition_bits=MOVE_BITS, previous=old)
    moves = diff(old, new)
    share = width * (1 << MOVE_BITS) / (len(pods) + 1)  # fair share of an average pod
    assert len(moves) <= 1.15 * share
    assert all(m.to_pod == "pod-new" for m in moves)
    assert new.epoch == old.epoch + 1
    assert check_map(new) == []
    assert_survivors_keep_slots(old, new)


@examples(8)
@given(cluster=movable_clusters(), which=st.integers(0, 10**6))
def test_removing_a_pod_moves_its_slots_and_at_most_10_percent_more(
    cluster: tuple[list[PodSpec], int], which: int
) -> None:
    pods, width = cluster
    old = build_map(pods, width, partition_bits=MOVE_BITS)
    gone = pods[which % len(pods)]
    new = build_map(
        [p for p in pods if p is not gone], width, partition_bits=MOVE_BITS, previous=old
    )
    moves = diff(old, new)
    held = len(old.partitions_of(gone.pod_id))
    assert sum(m.from_pod == gone.pod_id for m in moves) == held
    assert len(moves) <= 1.10 * held
    assert check_map(new) == []
    assert_survivors_keep_slots(old, new)


@examples(8)
@given(
    cluster=movable_clusters(),
    which=st.integers(0, 10**6),
    factor=st.sampled_from([0.5, 1.5, 2.0]),
)
def test_weight_change_moves_only_that_pods_slots(
    cluster: tuple[list[PodSpec], int], which: int, factor: float
) -> None:
    pods, width = cluster
    old = build_map(pods, width, partition_bits=MOVE_BITS)
    pod = pods[which % len(pods)]
    changed = [
        PodSpec(p.pod_id, p.zone, p.node, p.weight * factor) if p is pod else p for p in pods
    ]
    new = build_map(changed, width, partition_bits=MOVE_BITS, previous=old)
    moves = diff(old, new)
    wanted = fair_shares(changed, width, MOVE_BITS)[pod.pod_id]
    assert len(moves) <= 1.15 * abs(wanted - len(old.partitions_of(pod.pod_id))) + 1
    assert all(pod.pod_id in (m.from_pod, m.to_pod) for m in moves)
    assert check_map(new) == []
    assert_survivors_keep_slots(old, new)


def test_draining_pod_is_emptied_by_moving_only_its_slots() -> None:
    pods = zone_cluster(6, 3)
    old = build_map(pods, 6, partition_bits=10)
    drained = [PodSpec(p.pod_id, p.zone, p.node, 0.0) if i == 4 else p for i, p in enumerate(pods)]
    new = build_map(drained, 6, partition_bits=10, previous=old)
    assert new.partitions_of(pods[4].pod_id) == []
    assert new.pods == tuple(sorted(drained, key=lambda p: p.pod_id))  # still listed, holds nothing
    moves = diff(old, new)
    assert all(m.from_pod == pods[4].pod_id for m in moves)
    assert len(moves) == len(old.partitions_of(pods[4].pod_id))
    assert check_map(new) == []


def test_rebuilding_from_the_same_pods_moves_nothing() -> None:
    pods = zone_cluster(5, 4, (1.0, 2.0))
    old = build_map(pods, 11, partition_bits=9)
    again = build_map(pods, 11, partition_bits=9, previous=old)
    assert diff(old, again) == [] and again.epoch == 2


def test_width_change_keeps_the_slots_that_remain() -> None:
    pods = zone_cluster(4, 3)
    old = build_map(pods, 6, partition_bits=8)
    wider = build_map(pods, 9, partition_bits=8, previous=old)
    assert all(w[:6] == o for o, w in zip(old.assignment, wider.assignment, strict=True))
    narrower = build_map(pods, 3, partition_bits=8, previous=old)
    assert_survivors_keep_slots(old, narrower)
    assert check_map(wider) == [] and check_map(narrower) == []


def test_other_partition_bits_start_afresh() -> None:
    pods = zone_cluster(3, 3)
    old = build_map(pods, 3, partition_bits=6)
    new = build_map(pods, 3, partition_bits=7, previous=old)
    assert new.epoch == 2 and new.partition_count == 128 and check_map(new) == []
    with pytest.raises(PlacementError):
        diff(old, new)


# -- errors and the checker -------------------------------------------------------


def test_bad_inputs_are_refused() -> None:
    pods = zone_cluster(2, 2)
    with pytest.raises(PlacementError, match="at least 6 pods"):
        build_map(pods, 6)
    drained = [PodSpec(p.pod_id, p.zone, weight=0.0) for p in pods[:2]] + pods[2:]
    with pytest.raises(PlacementError, match="weight > 0"):
        build_map(drained, 3)
    with pytest.raises(PlacementError, match="twice"):
        build_map([*pods, pods[0]], 3)
    with pytest.raises(PlacementError, match="width"):
        build_map(pods, 0)
    with pytest.raises(PlacementError, match="partition_bits"):
        build_map(pods, 3, partition_bits=21)


def test_check_map_reports_each_kind_of_violation() -> None:
    pods = (
        PodSpec("a1", zone="a"),
        PodSpec("a2", zone="a"),
        PodSpec("b1", zone="b"),
        PodSpec("c1", zone="c"),
        PodSpec("off", zone="c", weight=0.0),
    )
    good = PlacementMap(1, 1, 3, pods, (("a1", "b1", "c1"), ("a2", "b1", "c1")))
    assert check_map(good) == []
    same_zone = PlacementMap(1, 1, 3, pods, (("a1", "a2", "c1"), ("a2", "b1", "c1")))
    problems = check_map(same_zone)
    assert any("zone 'a' holds 2" in p for p in problems)
    four = tuple(PodSpec(f"{z}1", zone=z) for z in "abcd")
    skewed = PlacementMap(1, 2, 3, four, (("a1", "b1", "c1"),) * 4)
    assert check_map(skewed) == [
        "pod 'd1' holds 0 slots, fair share 3.0 (-100.0% off, tolerance 5%)"
    ]
    drained = PlacementMap(1, 1, 3, pods, (("a1", "b1", "off"), ("a2", "b1", "c1")))
    assert any("'off' of weight 0" in p for p in check_map(drained))
    too_few = PlacementMap(1, 0, 3, (*pods[:2], PodSpec("x", weight=0.0)), (("a1", "a2", "x"),))
    assert any("cannot fill" in p for p in check_map(too_few))
    node_pods = (PodSpec("p1", node="n"), PodSpec("p2", node="n"), PodSpec("p3", node="m"))
    shared = PlacementMap(1, 0, 2, node_pods, (("p1", "p2"),))
    assert any("node 'n'" in p for p in check_map(shared))


def test_check_map_summarises_long_lists() -> None:
    pods = (PodSpec("a1", zone="a"), PodSpec("a2", zone="a"), PodSpec("b1", zone="b"))
    bad = PlacementMap(1, 6, 2, pods, (("a1", "a2"),) * 64)
    problems = check_map(bad)
    assert any(p.startswith("... and 44 more") for p in problems)
