"""The mutable state of one map build: who holds which slot, and what is allowed.

Rules:
- Pods are indices 0..n-1 in pod-id order; a row is one partition's slots, FREE
  when empty. `held[p]` maps each partition p holds to its slot (a pod holds at
  most one slot of a partition), kept in step with `rows` by `set` alone.
- `fits` is the one test of the domain caps; every step of the build moves a
  slot only through `fits` and `set`, so caps hold after every single move.
- Order never depends on PYTHONHASHSEED: no `hash()`, no iteration over sets;
  ties are broken by `mix`, a stable hash of the pod id.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction

from kurastore.placement._targets import Targets

__all__ = ["FREE", "State", "mix", "seed_of"]

FREE = -1
_MASK = (1 << 64) - 1


def mix(seed: int, n: int) -> int:
    """A stable pseudo-random tie-break for the n-th slot of a pod (one splitmix64 round)."""
    z = (seed + n * 0x9E3779B97F4A7C15) & _MASK
    return ((z ^ (z >> 31)) * 0xBF58476D1CE4E5B9) & _MASK


def seed_of(pod_id: str) -> int:
    digest = hashlib.blake2b(pod_id.encode(), digest_size=8, person=b"kura-placement").digest()
    return int.from_bytes(digest, "big")


class State:
    """The assignment being built: rows of pod indices, per-pod holdings, targets."""

    def __init__(self, targets: Targets, slack: Fraction) -> None:
        self.ids = sorted(targets.fair)
        self.width = targets.width
        self.count = targets.partition_count
        zone_index = {z: i for i, z in enumerate(sorted(set(targets.zone_of.values())))}
        node_index = {d: i for i, d in enumerate(sorted(set(targets.node_of.values())))}
        self.zone = [zone_index[targets.zone_of[i]] for i in self.ids]
        self.node = [node_index[targets.node_of[i]] for i in self.ids]
        self.node_cap = [targets.node_cap[targets.node_of[i]] for i in self.ids]
        self.zone_cap = targets.zone_cap
        self.check_zones = self.zone_cap < self.width
        self.check_nodes = len(node_index) < len(self.ids) and min(self.node_cap) < self.width
        self.fair = [float(targets.fair[i]) for i in self.ids]
        # Rank: slots of one partition a domain can hold (its cap, or its pod count).
        cap_of_node = dict(zip(self.node, self.node_cap, strict=True))
        self.zone_rank = {z: min(self.zone_cap, k) for z, k in Counter(self.zone).items()}
        self.node_rank = {d: min(cap_of_node[d], k) for d, k in Counter(self.node).items()}
        self.lo = [targets.bounds(i)[0] for i in self.ids]
        self.hi = [targets.bounds(i)[1] for i in self.ids]
        # Band a pod may stay in without moving: [floor, ceil] of fair x (1 -+ slack).
        self.bottom = [math.floor(targets.fair[i] * (1 - slack)) for i in self.ids]
        self.top = [math.ceil(targets.fair[i] * (1 + slack)) for i in self.ids]
        self.seed = [seed_of(i) for i in self.ids]
        # Slots a zone holds minus its fair total; `zone_flips` counts sign changes.
        self.zone_excess = [0.0] * len(zone_index)
        for p, z in enumerate(self.zone):
            self.zone_excess[z] -= self.fair[p]
        self.zone_flips = 0
        self.rows = [[FREE] * self.width for _ in range(self.count)]
        self.held: list[dict[int, int]] = [{} for _ in self.ids]  # pod -> {partition: slot}

    def set(self, q: int, s: int, p: int) -> None:
        """Put pod p (or FREE) in slot s of partition q, keeping `held` and zone totals."""
        old = self.rows[q][s]
        if old != FREE:
            del self.held[old][q]
            self._count_zone(self.zone[old], -1)
        self.rows[q][s] = p
        if p != FREE:
            self.held[p][q] = s
            self._count_zone(self.zone[p], 1)

    def _count_zone(self, z: int, delta: int) -> None:
        before = self.zone_excess[z] > 0
        self.zone_excess[z] += delta
        if (self.zone_excess[z] > 0) != before:
            self.zone_flips += 1

    def fits(self, row: list[int], s: int, b: int) -> bool:
        """Can pod b take slot s of row (replacing whoever holds it) within the caps?"""
        if b in row:
            return False
        a = row[s]
        if self.check_zones and (a == FREE or self.zone[a] != self.zone[b]):
            zb, zone = self.zone[b], self.zone
            if sum(1 for x in row if x != FREE and zone[x] == zb) >= self.zone_cap:
                return False
        if self.check_nodes and (a == FREE or self.node[a] != self.node[b]):
            nb, node = self.node[b], self.node
            if sum(1 for x in row if x != FREE and node[x] == nb) >= self.node_cap[b]:
                return False
        return True

    def load(self, p: int) -> float:
        return len(self.held[p]) / self.fair[p]

    def keep(self, previous: Sequence[Sequence[str]]) -> None:
        """Adopt the previous assignment, minus what must go."""
        index = {pod_id: p for p, pod_id in enumerate(self.ids)}
        for q, old in enumerate(previous):
            for s, pod_id in enumerate(old[: self.width]):
                p = index.get(pod_id, FREE)
                if p != FREE:
                    self.set(q, s, p)
        if not (self.check_zones or self.check_nodes):
            return
        for q, row in enumerate(self.rows):
            if self._row_ok(row):
                continue
            # Free, one at a time, the slot of the most loaded pod in an over-cap domain.
            while True:
                over = [s for s, p in enumerate(row) if p != FREE and not self._keeps(row, s)]
                if not over:
                    break
                s = max(over, key=lambda s: (self.load(row[s]), s))
                self.set(q, s, FREE)

    def _row_ok(self, row: list[int]) -> bool:
        """No zone and no node of the row above its cap (fast path of keep)."""
        if self.check_zones:
            counts: dict[int, int] = {}
            for p in row:
                if p != FREE:
                    counts[self.zone[p]] = counts.get(self.zone[p], 0) + 1
            if max(counts.values(), default=0) > self.zone_cap:
                return False
        if self.check_nodes:
            counts = {}
            for p in row:
                if p != FREE:
                    n = self.node[p]
                    counts[n] = counts.get(n, 0) + 1
                    if counts[n] > self.node_cap[p]:
                        return False
        return True

    def _keeps(self, row: list[int], s: int) -> bool:
        p = row[s]
        zone, node = self.zone, self.node
        if self.check_zones:
            if sum(1 for x in row if x != FREE and zone[x] == zone[p]) > self.zone_cap:
                return False
        if self.check_nodes:
            if sum(1 for x in row if x != FREE and node[x] == node[p]) > self.node_cap[p]:
                return False
        return True

    def rotated(self, p: int) -> list[int]:
        """Partitions held by p, from a per-pod offset, so pods give from all over the map."""
        qs = list(self.held[p])
        if not qs:
            return qs
        k = self.seed[p] % len(qs)
        return qs[k:] + qs[:k]

    def by_need(self, pods: Sequence[int]) -> list[int]:
        return sorted(pods, key=lambda p: (self.load(p), mix(self.seed[p], len(self.held[p]))))

    def zone_order(self, a: int, b: int) -> int:
        """How a slot moving from a to b changes zone totals: 0 evens, 1 keeps, 2 unevens.

        Moves are tried in this order so that zones reach their targets through
        the partitions where their caps leave room, and pods within a zone
        then even out among themselves.
        """
        za, zb = self.zone[a], self.zone[b]
        if za == zb or not self.check_zones:
            return 1
        excess = self.zone_excess
        return 0 if excess[za] > 0 and excess[zb] < 0 else 2

    def orders(self) -> tuple[int, ...]:
        return (0, 1, 2) if self.check_zones else (1,)

    def unbalanced(self) -> list[int]:
        return [
            p
            for p in range(len(self.ids))
            if not self.bottom[p] <= len(self.held[p]) <= self.top[p]
        ]
