"""PlacementMap as data: partition_of, lookups, validation, JSON round trip, diff."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kurastore.placement import (
    MAP_FORMAT,
    InvalidMap,
    InvalidObjectId,
    Move,
    PlacementError,
    PlacementMap,
    PodSpec,
    build_map,
    diff,
)

# blake2b-64 of the id's 16 bytes, top bits. These numbers are part of the
# on-disk contract: version records pin partitions through them.
PARTITION_VECTORS = [
    ("00000000000000000000000000000000", {0: 0, 1: 0, 8: 82, 12: 1317, 13: 2634, 20: 337162}),
    ("0123456789abcdef0123456789abcdef", {0: 0, 1: 1, 8: 185, 12: 2964, 13: 5929, 20: 758941}),
    ("ffffffffffffffffffffffffffffffff", {0: 0, 1: 1, 8: 245, 12: 3926, 13: 7853, 20: 1005203}),
    ("5f1c2a9e7b3d40e18c6a2f9b0d4e7a31", {0: 0, 1: 0, 8: 26, 12: 429, 13: 859, 20: 109984}),
]


def small_map(bits: int = 4, width: int = 3, epoch: int = 1) -> PlacementMap:
    pods = [
        PodSpec(f"pod-{i}", zone=f"z{i % 3}", node=f"n{i}", weight=1.0 + i % 2) for i in range(7)
    ]
    pmap = build_map(pods, width, partition_bits=bits)
    if epoch == 1:
        return pmap
    return PlacementMap(epoch, pmap.partition_bits, pmap.width, pmap.pods, pmap.assignment)


@pytest.mark.parametrize(("object_id", "expected"), PARTITION_VECTORS)
def test_partition_of_fixed_vectors(object_id: str, expected: dict[int, int]) -> None:
    pods = (PodSpec("a"),)
    for bits, partition in expected.items():
        pmap = PlacementMap(1, bits, 1, pods, (("a",),) * (1 << bits))
        assert pmap.partition_of(object_id) == partition
        assert pmap.partition_of(bytes.fromhex(object_id)) == partition
        assert pmap.partition_of(object_id.upper()) == partition


@pytest.mark.parametrize(
    "bad", ["", "00", "g" * 32, "0" * 31, "0" * 33, b"\x00" * 15, b"\x00" * 17, 12345, None]
)
def test_partition_of_rejects_malformed_ids(bad: object) -> None:
    with pytest.raises(InvalidObjectId):
        small_map().partition_of(bad)  # type: ignore[arg-type]


def test_partition_of_spreads_ids_evenly() -> None:
    pmap = small_map(bits=4)
    counts = [0] * 16
    for i in range(16_000):
        counts[pmap.partition_of(i.to_bytes(16, "big"))] += 1
    assert min(counts) > 850 and max(counts) < 1150  # expected 1000 each, sequential ids


def test_pods_for_and_partitions_of_agree() -> None:
    pmap = small_map(bits=5, width=3)
    assert pmap.partition_count == 32
    for partition in range(32):
        row = pmap.pods_for(partition)
        assert len(row) == 3 and len(set(row)) == 3
        assert pmap.pods_for(partition, 2) == row[:2]
        assert pmap.pods_for(partition, 0) == ()
    for pod in pmap.pods:
        for partition, slot in pmap.partitions_of(pod.pod_id):
            assert pmap.pods_for(partition)[slot] == pod.pod_id
    total = sum(len(pmap.partitions_of(p.pod_id)) for p in pmap.pods)
    assert total == 32 * 3
    assert pmap.partitions_of("no-such-pod") == []
    with pytest.raises(PlacementError):
        pmap.pods_for(0, 4)


def test_map_refuses_bad_shapes() -> None:
    pods = (PodSpec("a"), PodSpec("b"))
    with pytest.raises(InvalidMap, match="distinct"):
        PlacementMap(1, 0, 2, pods, (("a", "a"),))
    with pytest.raises(InvalidMap, match="unknown"):
        PlacementMap(1, 0, 2, pods, (("a", "c"),))
    with pytest.raises(InvalidMap, match="partitions"):
        PlacementMap(1, 1, 2, pods, (("a", "b"),))
    with pytest.raises(InvalidMap, match="twice"):
        PlacementMap(1, 0, 1, (PodSpec("a"), PodSpec("a")), (("a",),))
    with pytest.raises(InvalidMap, match="epoch"):
        PlacementMap(0, 0, 1, pods, (("a",),))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pod_id": ""},
        {"weight": -1.0},
        {"weight": float("nan")},
        {"weight": float("inf")},
        {"weight": "1"},
        {"zone": None},
    ],
)
def test_podspec_validates(kwargs: dict[str, object]) -> None:
    fields = {"pod_id": "p", **kwargs}
    with pytest.raises(PlacementError):
        PodSpec(**fields)  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None)
@given(
    bits=st.integers(0, 6),
    width=st.integers(1, 5),
    extra=st.integers(0, 6),
    weights=st.lists(st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.25]), min_size=11, max_size=11),
    epoch=st.integers(1, 10**6),
)
def test_json_round_trip_is_exact(
    bits: int, width: int, extra: int, weights: list[float], epoch: int
) -> None:
    pods = [
        PodSpec(f"pod-{i}", zone=f"zone-{i % 3}", node=f"node-{i // 2}", weight=weights[i])
        for i in range(width + extra)
    ]
    built = build_map(pods, width, partition_bits=bits)
    pmap = PlacementMap(epoch, built.partition_bits, width, built.pods, built.assignment)
    text = pmap.to_json()
    again = PlacementMap.from_json(text)
    assert again == pmap
    assert again.to_json() == text
    assert json.loads(text)["format"] == MAP_FORMAT


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format="kurastore.placement.map/99"), "unknown placement map format"),
        (lambda d: d.pop("width"), "malformed"),
        (lambda d: d["assignment"][0].__setitem__(0, 99), "out of range"),
        (lambda d: d["assignment"][0].__setitem__(0, True), "integer"),
        (lambda d: d.update(epoch="3"), "integer"),
        (lambda d: d["pods"][0].update(weight=-2), "weight"),
        (lambda d: d.update(pods=[1, 2]), "pod entry"),
    ],
)
def test_from_json_rejects_malformed(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(small_map().to_json())
    mutate(doc)
    with pytest.raises(InvalidMap, match=message):
        PlacementMap.from_json(json.dumps(doc))


def test_from_json_rejects_non_json() -> None:
    with pytest.raises(InvalidMap):
        PlacementMap.from_json("{not json")
    with pytest.raises(InvalidMap):
        PlacementMap.from_json("[]")


def test_diff_lists_exactly_the_changed_slots() -> None:
    pods = [PodSpec(f"p{i}") for i in range(6)]
    old = PlacementMap(1, 1, 3, tuple(pods), (("p0", "p1", "p2"), ("p3", "p4", "p5")))
    new = PlacementMap(2, 1, 3, tuple(pods), (("p0", "p5", "p2"), ("p3", "p4", "p5")))
    assert diff(old, new) == [Move(0, 1, "p1", "p5")]
    assert diff(old, old) == []


def test_diff_handles_width_changes_and_refuses_other_partitioning() -> None:
    pods = tuple(PodSpec(f"p{i}") for i in range(4))
    narrow = PlacementMap(1, 0, 2, pods, (("p0", "p1"),))
    wide = PlacementMap(2, 0, 4, pods, (("p0", "p2", "p1", "p3"),))
    assert diff(narrow, wide) == [
        Move(0, 1, "p1", "p2"),
        Move(0, 2, None, "p1"),
        Move(0, 3, None, "p3"),
    ]
    assert diff(wide, narrow) == [Move(0, 1, "p2", "p1")]
    other = PlacementMap(1, 1, 2, pods, (("p0", "p1"), ("p2", "p3")))
    with pytest.raises(PlacementError, match="partition_bits"):
        diff(narrow, other)
