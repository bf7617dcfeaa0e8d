"""Durability: how many objects and bytes stand at k+m, k+m-1 ... k healthy blocks,
as the scrubber's last pass measured it.

Rules:
- A block is healthy when its shard is on the pod its pinned epoch names for its
  index and the pod verified every frame of it in this pass. A shard on a pod the
  pass could not reach counts as not healthy: it cannot serve a read now.
- An object (a committed version) is as durable as its weakest part: its count
  is the minimum over its parts. Its bytes are the sum of its parts' sizes.
  Multipart uploads in progress are scrubbed and healed but are not objects yet.
- Below k healthy blocks an object cannot be read until a pod comes back: such
  counts are kept under their own number, so a gauge below k is an alarm.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from kurastore.metadata import PinnedPart


@dataclass(frozen=True)
class Durability:
    measured: float  # when the pass that measured it ended (0: never)
    objects: dict[int, int] = field(default_factory=dict)  # healthy blocks -> objects
    bytes: dict[int, int] = field(default_factory=dict)  # healthy blocks -> bytes
    below_k_objects: int = 0  # objects with fewer than k healthy blocks (unreadable now)

    def as_json(self) -> dict[str, Any]:
        return {
            "measured": self.measured or None,
            "objects_by_healthy_blocks": {str(n): c for n, c in sorted(self.objects.items())},
            "bytes_by_healthy_blocks": {str(n): c for n, c in sorted(self.bytes.items())},
            "objects_below_k": self.below_k_objects,
        }


class DurabilityTally:
    """Collects one pass's per-part counts; `finish()` makes the Durability value."""

    def __init__(self) -> None:
        # object id -> [weakest healthy count, bytes, k]
        self._objects: dict[str, list[int]] = {}

    def add(self, part: PinnedPart, healthy: int) -> None:
        if part.kind != "version":
            return
        entry = self._objects.get(part.object_id)
        if entry is None:
            self._objects[part.object_id] = [healthy, part.size, part.k]
        else:
            entry[0] = min(entry[0], healthy)
            entry[1] += part.size

    def finish(self, now: float | None = None) -> Durability:
        objects: dict[int, int] = {}
        sizes: dict[int, int] = {}
        below = 0
        for healthy, size, k in self._objects.values():
            objects[healthy] = objects.get(healthy, 0) + 1
            sizes[healthy] = sizes.get(healthy, 0) + size
            below += healthy < k
        return Durability(time.time() if now is None else now, objects, sizes, below)
