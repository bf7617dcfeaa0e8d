"""The placement map as data: pods, partitions, their ordered pod lists, JSON.

Rules:
- A map is immutable and self-validating: every partition holds exactly `width`
  distinct pods, all named in `pods`. Whoever holds a map can trust its shape.
- `partition_of` is a pure function of the object id and `partition_bits`: the
  top bits of blake2b-64 of the id's 16 raw bytes. It never uses `hash()`, so
  every process and every version of kurastore agrees on it.
- Slot i of a partition holds block index i of every part stored there.
- The JSON form is versioned (`"format"`); pods are written once and the
  assignment refers to them by index, which keeps a 4096 x 11 map near 200 KB.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from kurastore.placement.errors import InvalidMap, InvalidObjectId, PlacementError

__all__ = ["MAP_FORMAT", "MAX_PARTITION_BITS", "Move", "PlacementMap", "PodSpec"]

MAP_FORMAT = "kurastore.placement.map/1"
MAX_PARTITION_BITS = 20


@dataclass(frozen=True)
class PodSpec:
    """One storage pod as placement sees it.

    `zone` and `node` name its failure domains ("" = unknown: all pods with an
    empty zone share one zone; a pod with an empty node is its own node).
    `weight` is relative capacity; 0 means draining: a new map gives it nothing.
    """

    pod_id: str
    zone: str = ""
    node: str = ""
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.pod_id, str) or not self.pod_id:
            raise PlacementError(f"pod_id must be a non-empty string, got {self.pod_id!r}")
        if not isinstance(self.zone, str) or not isinstance(self.node, str):
            raise PlacementError(f"pod {self.pod_id!r}: zone and node must be strings")
        weight = self.weight
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise PlacementError(f"pod {self.pod_id!r}: weight must be a number, got {weight!r}")
        if not math.isfinite(weight) or weight < 0:
            raise PlacementError(f"pod {self.pod_id!r}: weight must be finite and >= 0")
        object.__setattr__(self, "weight", float(weight))


@dataclass(frozen=True)
class Move:
    """Slot `slot` of `partition` moves from `from_pod` (None: nobody held it) to `to_pod`."""

    partition: int
    slot: int
    from_pod: str | None
    to_pod: str


def object_id_bytes(object_id: str | bytes) -> bytes:
    """The 16 raw bytes of an object id given as 32 hex chars or 16 bytes."""
    if isinstance(object_id, bytes | bytearray | memoryview):
        raw = bytes(object_id)
    elif isinstance(object_id, str) and len(object_id) == 32:
        try:
            raw = bytes.fromhex(object_id)
        except ValueError:
            raise InvalidObjectId(f"object id {object_id!r} is not hexadecimal") from None
    else:
        raise InvalidObjectId(f"object id must be 32 hex chars or 16 bytes, got {object_id!r}")
    if len(raw) != 16:
        raise InvalidObjectId(f"object id must be 16 bytes, got {len(raw)}")
    return raw


def partition_for(object_id: str | bytes, partition_bits: int) -> int:
    """Partition of an object id: the top `partition_bits` bits of blake2b-64(id)."""
    digest = hashlib.blake2b(object_id_bytes(object_id), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - partition_bits)


@dataclass(frozen=True)
class PlacementMap:
    """Epoch-numbered map: partition -> ordered tuple of `width` distinct pod ids."""

    epoch: int
    partition_bits: int
    width: int
    pods: tuple[PodSpec, ...]
    assignment: tuple[tuple[str, ...], ...]

    def __post_init__(self) -> None:
        if not 0 <= self.partition_bits <= MAX_PARTITION_BITS:
            raise InvalidMap(f"partition_bits must be in 0..{MAX_PARTITION_BITS}")
        if self.width < 1:
            raise InvalidMap(f"width must be >= 1, got {self.width}")
        if self.epoch < 1:
            raise InvalidMap(f"epoch must be >= 1, got {self.epoch}")
        known = {pod.pod_id for pod in self.pods}
        if len(known) != len(self.pods):
            raise InvalidMap("pods contains a pod_id twice")
        if len(self.assignment) != 1 << self.partition_bits:
            raise InvalidMap(
                f"assignment has {len(self.assignment)} partitions, "
                f"expected {1 << self.partition_bits}"
            )
        for partition, row in enumerate(self.assignment):
            if len(row) != self.width or len(set(row)) != self.width:
                raise InvalidMap(f"partition {partition} needs {self.width} distinct pods: {row}")
            if not known.issuperset(row):
                raise InvalidMap(f"partition {partition} names an unknown pod: {row}")

    @property
    def partition_count(self) -> int:
        return 1 << self.partition_bits

    def partition_of(self, object_id: str | bytes) -> int:
        """The partition an object id belongs to (stable across processes and versions)."""
        return partition_for(object_id, self.partition_bits)

    def pods_for(self, partition: int, n: int | None = None) -> tuple[str, ...]:
        """The first `n` pods (default: all `width`) of a partition, slot order."""
        row = self.assignment[partition]
        if n is None:
            return row
        if not 0 <= n <= self.width:
            raise PlacementError(f"n must be in 0..{self.width}, got {n}")
        return row[:n]

    def partitions_of(self, pod_id: str) -> list[tuple[int, int]]:
        """(partition, slot) pairs held by a pod, by partition; [] for an unknown pod."""
        return list(self._held.get(pod_id, ()))

    @cached_property
    def _held(self) -> dict[str, tuple[tuple[int, int], ...]]:
        held: dict[str, list[tuple[int, int]]] = {pod.pod_id: [] for pod in self.pods}
        for partition, row in enumerate(self.assignment):
            for slot, pod_id in enumerate(row):
                held[pod_id].append((partition, slot))
        return {pod_id: tuple(pairs) for pod_id, pairs in held.items()}

    def to_json(self) -> str:
        """Versioned JSON; `from_json(to_json())` gives back an equal map."""
        index = {pod.pod_id: i for i, pod in enumerate(self.pods)}
        doc = {
            "format": MAP_FORMAT,
            "epoch": self.epoch,
            "partition_bits": self.partition_bits,
            "width": self.width,
            "pods": [
                {"pod_id": p.pod_id, "zone": p.zone, "node": p.node, "weight": p.weight}
                for p in self.pods
            ],
            "assignment": [[index[pod_id] for pod_id in row] for row in self.assignment],
        }
        return json.dumps(doc, separators=(",", ":"))

    @classmethod
    def from_json(cls, s: str | bytes) -> PlacementMap:
        """Parse `to_json` output; InvalidMap for anything malformed or of unknown format."""
        try:
            doc = json.loads(s)
        except ValueError as exc:
            raise InvalidMap(f"placement map is not JSON: {exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != MAP_FORMAT:
            found = doc.get("format") if isinstance(doc, dict) else None
            raise InvalidMap(f"unknown placement map format {found!r}, expected {MAP_FORMAT!r}")
        try:
            pods = tuple(_pod_from_json(p) for p in doc["pods"])
            names = [p.pod_id for p in pods]
            assignment = tuple(
                tuple(names[_index(i, len(names))] for i in row) for row in doc["assignment"]
            )
            return cls(
                epoch=_int(doc["epoch"]),
                partition_bits=_int(doc["partition_bits"]),
                width=_int(doc["width"]),
                pods=pods,
                assignment=assignment,
            )
        except (KeyError, TypeError, IndexError) as exc:
            raise InvalidMap(f"malformed placement map: {exc!r}") from None
        except InvalidMap:
            raise
        except PlacementError as exc:
            raise InvalidMap(f"malformed placement map: {exc}") from None


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidMap(f"expected an integer, got {value!r}")
    return value


def _index(value: Any, count: int) -> int:
    if _int(value) < 0 or value >= count:
        raise InvalidMap(f"pod index {value} out of range 0..{count - 1}")
    return int(value)


def _pod_from_json(doc: Any) -> PodSpec:
    if not isinstance(doc, dict):
        raise InvalidMap(f"pod entry must be an object, got {doc!r}")
    return PodSpec(doc["pod_id"], doc["zone"], doc["node"], doc["weight"])
