"""build_map: an explicit, balanced, domain-aware assignment with minimal movement.

Approach (in the spirit of Swift's ring builder; chosen by measurement, see
bench/placement.py): targets come from `_targets` (caps per zone and node,
weight-fair slot counts). Building then runs four deterministic steps on an
integer matrix partition x slot -> pod:

1. keep: start from `previous`; drop slots of pods that left or drain, and the
   fewest slots needed to bring every partition back under the domain caps.
2. fill: every empty slot goes to the eligible pod furthest below its fair
   share (a heap keyed by held/fair; ties broken by a stable per-pod hash that
   changes with every slot taken, so equal pods interleave pseudo-randomly).
3. shed, then take: pods above ceil(fair) hand single slots straight to pods
   below their share; pods below floor(fair) take single slots from pods above
   it. A move replaces one pod in one slot, so survivors never change slot.
4. chains: a pod no direct move can serve is served along a short chain
   a -> c -> b (c gives one slot and takes one), found breadth-first.

Rules: no `hash()`, no set iteration (order must not depend on PYTHONHASHSEED),
floats only for heap ordering, never for a target.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from fractions import Fraction

from kurastore.placement._map import MAX_PARTITION_BITS, PlacementMap, PodSpec
from kurastore.placement._targets import Targets, compute_targets
from kurastore.placement.errors import PlacementError

__all__ = ["DEFAULT_PARTITION_BITS", "build_map"]

# 2^13 partitions: 1000 pods at width 6 get ~49 slots each, so floor/ceil of a
# fair share is within 2.1% of it (4.1% at width 3); see bench/placement.py.
DEFAULT_PARTITION_BITS = 13

# A pod of an updated map keeps its slots while within 1% of its fair share:
# without this slack, shares shifting by a fraction of a slot would move
# slots between pods the change is not about (rounding churn).
KEEP_SLACK = Fraction(1, 100)

_MASK = (1 << 64) - 1
_FREE = -1


def _mix(seed: int, n: int) -> int:
    """A stable pseudo-random tie-break for the n-th slot of a pod (one splitmix64 round)."""
    z = (seed + n * 0x9E3779B97F4A7C15) & _MASK
    return ((z ^ (z >> 31)) * 0xBF58476D1CE4E5B9) & _MASK


def _seed(pod_id: str) -> int:
    digest = hashlib.blake2b(pod_id.encode(), digest_size=8, person=b"kura-placement").digest()
    return int.from_bytes(digest, "big")


def build_map(
    pods: Sequence[PodSpec],
    width: int,
    *,
    partition_bits: int = DEFAULT_PARTITION_BITS,
    previous: PlacementMap | None = None,
) -> PlacementMap:
    """Compute the placement map of `pods`; same inputs give the same map everywhere.

    With `previous`, slots move only where the new pod set, weights or caps
    require it. A `previous` with other `partition_bits` cannot be followed:
    the map is then built afresh (diff() refuses such a pair). The epoch is
    previous.epoch + 1, or 1. PlacementError: duplicate pod ids, width < 1,
    fewer than `width` pods with weight > 0, partition_bits out of range.
    """
    if isinstance(partition_bits, bool) or not 0 <= partition_bits <= MAX_PARTITION_BITS:
        raise PlacementError(f"partition_bits must be in 0..{MAX_PARTITION_BITS}")
    specs = tuple(sorted(pods, key=lambda p: p.pod_id))
    for before, after in itertools.pairwise(specs):
        if before.pod_id == after.pod_id:
            raise PlacementError(f"pod {after.pod_id!r} is listed twice")
    count = 1 << partition_bits
    targets = compute_targets(specs, width, count)
    if previous is not None and previous.partition_bits == partition_bits:
        builder = _Builder(targets, KEEP_SLACK)
        builder.keep(previous.assignment)
    else:
        builder = _Builder(targets, Fraction(0))
    builder.fill()
    builder.balance()
    names = builder.ids
    return PlacementMap(
        epoch=previous.epoch + 1 if previous is not None else 1,
        partition_bits=partition_bits,
        width=width,
        pods=specs,
        assignment=tuple(tuple(names[p] for p in row) for row in builder.rows),
    )


class _Builder:
    """Mutable working state: rows of pod indices and per-pod counts."""

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
        self.seed = [_seed(i) for i in self.ids]
        self.rows = [[_FREE] * self.width for _ in range(self.count)]
        self.held: list[dict[int, int]] = [{} for _ in self.ids]  # pod -> {partition: slot}

    # -- bookkeeping ---------------------------------------------------------

    def _set(self, q: int, s: int, p: int) -> None:
        old = self.rows[q][s]
        if old != _FREE:
            del self.held[old][q]
        self.rows[q][s] = p
        if p != _FREE:
            self.held[p][q] = s

    def _fits(self, row: list[int], s: int, b: int) -> bool:
        """Can pod b take slot s of row (replacing whoever holds it) within the caps?"""
        if b in row:
            return False
        a = row[s]
        if self.check_zones and (a == _FREE or self.zone[a] != self.zone[b]):
            zb, zone = self.zone[b], self.zone
            if sum(1 for x in row if x != _FREE and zone[x] == zb) >= self.zone_cap:
                return False
        if self.check_nodes and (a == _FREE or self.node[a] != self.node[b]):
            nb, node = self.node[b], self.node
            if sum(1 for x in row if x != _FREE and node[x] == nb) >= self.node_cap[b]:
                return False
        return True

    def _load(self, p: int) -> float:
        return len(self.held[p]) / self.fair[p]

    # -- 1. keep -------------------------------------------------------------

    def keep(self, previous: Sequence[Sequence[str]]) -> None:
        """Adopt the previous assignment, minus what must go."""
        index = {pod_id: p for p, pod_id in enumerate(self.ids)}
        for q, old in enumerate(previous):
            for s, pod_id in enumerate(old[: self.width]):
                p = index.get(pod_id, _FREE)
                if p != _FREE:
                    self._set(q, s, p)
        if not (self.check_zones or self.check_nodes):
            return
        for q, row in enumerate(self.rows):
            if self._row_ok(row):
                continue
            # Free, one at a time, the slot of the most loaded pod in an over-cap domain.
            while True:
                over = [s for s, p in enumerate(row) if p != _FREE and not self._keeps(row, s)]
                if not over:
                    break
                s = max(over, key=lambda s: (self._load(row[s]), s))
                self._set(q, s, _FREE)

    def _row_ok(self, row: list[int]) -> bool:
        """No zone and no node of the row above its cap (fast path of keep)."""
        if self.check_zones:
            counts: dict[int, int] = {}
            for p in row:
                if p != _FREE:
                    counts[self.zone[p]] = counts.get(self.zone[p], 0) + 1
            if max(counts.values(), default=0) > self.zone_cap:
                return False
        if self.check_nodes:
            counts = {}
            for p in row:
                if p != _FREE:
                    n = self.node[p]
                    counts[n] = counts.get(n, 0) + 1
                    if counts[n] > self.node_cap[p]:
                        return False
        return True

    def _keeps(self, row: list[int], s: int) -> bool:
        p = row[s]
        zone, node = self.zone, self.node
        if self.check_zones:
            if sum(1 for x in row if x != _FREE and zone[x] == zone[p]) > self.zone_cap:
                return False
        if self.check_nodes:
            if sum(1 for x in row if x != _FREE and node[x] == node[p]) > self.node_cap[p]:
                return False
        return True

    # -- 2. fill -------------------------------------------------------------

    def fill(self) -> None:
        """Give every free slot to the eligible pod least loaded relative to its share.

        One flat heap of pods would be correct but slow under zone caps: pods of
        a zone that is full in this partition pile up at the top and are passed
        over again and again. So the heap is a tree (zones, then nodes, then
        pods): a full domain is passed over once, not once per pod.
        """
        root = self._tree()
        for q, row in enumerate(self.rows):
            if _FREE not in row:
                continue
            used: dict[int, int] = {}  # group uid -> slots of this row in it
            for p in row:
                if p != _FREE:
                    for group in self.path[p]:
                        used[group.uid] = used.get(group.uid, 0) + 1
            for s in range(self.width):
                if row[s] == _FREE:
                    p = self._pick(root, row, used)
                    if p == _FREE:
                        raise PlacementError(f"no pod fits partition {q} slot {s} (internal)")
                    self._set(q, s, p)

    def _tree(self) -> _Group:
        """Groups for the domains that constrain: zones if capped, nodes if capped."""
        uid = iter(range(1 << 30))
        root = _Group(next(uid), 0.0, self.width)
        self.path: list[list[_Group]] = [[] for _ in self.ids]
        zones: dict[int, _Group] = {}
        nodes: dict[int, _Group] = {}
        for p in range(len(self.ids)):
            parent = root
            if self.check_zones:
                z = self.zone[p]
                if z not in zones:
                    zones[z] = _Group(next(uid), 0.0, self.zone_rank[z])
                    root.kids.append(zones[z])
                parent = zones[z]
                self.path[p].append(parent)
            if self.check_nodes:
                n = self.node[p]
                if n not in nodes:
                    nodes[n] = _Group(next(uid), 0.0, self.node_rank[n])
                    parent.kids.append(nodes[n])
                parent = nodes[n]
                self.path[p].append(parent)
            parent.kids.append(p)
            for group in self.path[p]:
                group.fair += self.fair[p]
                group.held += len(self.held[p])
        self._heapify(root)
        return root

    def _heapify(self, group: _Group) -> None:
        for kid in group.kids:
            if isinstance(kid, _Group):
                self._heapify(kid)
                group.heap.append((kid.held / kid.fair, _mix(kid.uid, kid.held), kid.uid, kid))
            else:
                held = len(self.held[kid])
                group.heap.append((held / self.fair[kid], _mix(self.seed[kid], held), kid, kid))
        heapq.heapify(group.heap)

    def _pick(self, group: _Group, row: list[int], used: dict[int, int]) -> int:
        """Pop the least loaded eligible pod below `group`, update loads; _FREE if none."""
        passed: list[tuple[float, int, int, _Group | int]] = []
        chosen = _FREE
        while group.heap and chosen == _FREE:
            entry = heapq.heappop(group.heap)
            kid = entry[3]
            if isinstance(kid, _Group):
                if used.get(kid.uid, 0) < kid.rank:
                    chosen = self._pick(kid, row, used)
                if chosen == _FREE:
                    passed.append(entry)
                    continue
                kid.held += 1
                used[kid.uid] = used.get(kid.uid, 0) + 1
                heapq.heappush(
                    group.heap, (kid.held / kid.fair, _mix(kid.uid, kid.held), kid.uid, kid)
                )
            elif kid in row:
                passed.append(entry)
            else:
                chosen = kid
                held = len(self.held[kid]) + 1
                entry = (held / self.fair[kid], _mix(self.seed[kid], held), kid, kid)
                heapq.heappush(group.heap, entry)
        for entry in passed:
            heapq.heappush(group.heap, entry)
        return chosen

    # -- 3. shed and take ----------------------------------------------------

    def balance(self) -> None:
        """Bring every pod within its band, moving single slots only where needed."""
        self._shed()
        self._take()
        for _ in range(3):
            if not self._unbalanced():
                return
            self._chains()
            self._shed()
            self._take()

    def _unbalanced(self) -> list[int]:
        return [
            p
            for p in range(len(self.ids))
            if not self.bottom[p] <= len(self.held[p]) <= self.top[p]
        ]

    def _by_need(self, pods: Sequence[int]) -> list[int]:
        return sorted(pods, key=lambda p: (self._load(p), _mix(self.seed[p], len(self.held[p]))))

    def _shed(self) -> None:
        """Pods above their band hand slots over until they reach ceil(fair).

        Receivers are tried from the most to the least in need: below their
        band, below floor(fair), below ceil(fair), below the band's top.
        """
        n, held = len(self.ids), self.held
        over = [p for p in range(n) if len(held[p]) > self.top[p]]
        for limit in (self.bottom, self.lo, self.hi, self.top):
            for a in sorted(over, key=lambda p: (-self._load(p), p)):
                receivers = [b for b in self._by_need(range(n)) if len(held[b]) < limit[b]]
                for q in self._rotated(a):
                    if len(held[a]) <= self.hi[a] or not receivers:
                        break
                    s, row = held[a][q], self.rows[q]
                    for b in receivers:
                        if len(held[b]) < limit[b] and self._fits(row, s, b):
                            self._set(q, s, b)
                            break

    def _take(self) -> None:
        """Pods below their band take slots until they reach floor(fair).

        Donors are tried from the most to the least in excess: above their
        band, above ceil(fair), above floor(fair), above the band's bottom.
        """
        n, held, rows = len(self.ids), self.held, self.rows
        under = self._by_need([p for p in range(n) if len(held[p]) < self.bottom[p]])
        for limit in (self.top, self.hi, self.lo, self.bottom):
            donors = [a for a in range(n) if len(held[a]) > limit[a]]
            donors.sort(key=lambda a: (limit[a] - len(held[a])) / self.fair[a])
            for b in under:
                for a in donors:
                    if len(held[b]) >= self.lo[b]:
                        break
                    for q in self._rotated(a):
                        if len(held[a]) <= limit[a] or len(held[b]) >= self.lo[b]:
                            break
                        row = rows[q]
                        if self._fits(row, held[a][q], b):
                            self._set(q, held[a][q], b)

    def _rotated(self, p: int) -> list[int]:
        """Partitions held by p, from a per-pod offset, so pods give from all over the map."""
        qs = list(self.held[p])
        if not qs:
            return qs
        k = self.seed[p] % len(qs)
        return qs[k:] + qs[:k]

    # -- 4. chains -----------------------------------------------------------

    def _chains(self) -> None:
        """Serve pods still outside their band through two-move chains.

        When caps forbid every direct move (typically: the taker's zone is full
        in each partition where a donor sits), a chain a -> c -> b moves one
        slot from donor a to a go-between c, and one slot of c elsewhere to b:
        only a and b change counts. The two partitions differ, so each move is
        checked against the rows it changes.
        """
        n, held = len(self.ids), self.held
        for b in self._by_need([p for p in range(n) if len(held[p]) < self.bottom[p]]):
            sources = self._slots_for(b, range(self.count))
            while len(held[b]) < self.lo[b]:
                donors = [a for a in range(n) if len(held[a]) > self.lo[a]]
                donors.sort(key=lambda a: (self.lo[a] - len(held[a])) / self.fair[a])
                if not self._chain(b, sources, donors):
                    break
        for a in [p for p in range(n) if len(held[p]) > self.top[p]]:
            while len(held[a]) > self.hi[a]:
                receivers = [b for b in self._by_need(range(n)) if len(held[b]) < self.hi[b]]
                if not any(
                    self._chain(b, self._slots_for(b, list(held[a])), [a]) for b in receivers
                ):
                    break

    def _slots_for(self, b: int, partitions: Iterable[int]) -> dict[int, list[tuple[int, int]]]:
        """Slots pod b could take now, grouped by their holder: {pod: [(partition, slot)]}."""
        slots: dict[int, list[tuple[int, int]]] = {}
        for q in partitions:
            row = self.rows[q]
            if b in row:
                continue
            for s, c in enumerate(row):
                if self._fits(row, s, b):
                    slots.setdefault(c, []).append((q, s))
        return slots

    def _chain(self, b: int, sources: dict[int, list[tuple[int, int]]], donors: list[int]) -> bool:
        """Move one slot from one of `donors` to b, directly or via a go-between."""
        rows, held = self.rows, self.held
        for a in donors:
            for q, s in sources.get(a, ()):
                if rows[q][s] == a and self._fits(rows[q], s, b):
                    self._set(q, s, b)
                    return True
            for q2 in self._rotated(a):
                row2, s2 = rows[q2], held[a][q2]
                for c, options in sources.items():
                    if c == a or c in row2 or not self._fits(row2, s2, c):
                        continue
                    for q1, s1 in options:
                        if q1 != q2 and rows[q1][s1] == c and self._fits(rows[q1], s1, b):
                            self._set(q2, s2, c)
                            self._set(q1, s1, b)
                            return True
        return False


class _Group:
    """A failure domain in the fill tree: its children in a heap ordered by load."""

    __slots__ = ("fair", "heap", "held", "kids", "rank", "uid")

    def __init__(self, uid: int, fair: float, rank: int) -> None:
        self.uid = uid
        self.fair = fair
        self.held = 0
        self.rank = rank  # slots of one partition this domain may hold
        self.kids: list[_Group | int] = []
        self.heap: list[tuple[float, int, int, _Group | int]] = []
