"""Filling empty slots: each goes to the eligible pod least loaded for its share.

Rules:
- Load is held / fair; the least loaded pod that fits takes the slot, so a
  fresh map fills every pod at the same pace and ends balanced.
- Ties between equal loads go by `mix(pod seed, slots held)`: a new order each
  round, so partitions get pseudo-random pod groups, never a fixed rotation.
- One flat heap of pods would be correct but slow under zone caps: the pods of
  a zone that is full in this partition pile up at the top and are passed over
  again and again. The heap is a tree (zones, then nodes, then pods), so a
  full domain is passed over once. A domain is eligible while the row holds
  fewer of its pods than its rank; caps form a laminar matroid, so a greedy
  pick never gets stuck while slots are free.
"""

from __future__ import annotations

import heapq

from kurastore.placement._state import FREE, State, mix
from kurastore.placement.errors import PlacementError

__all__ = ["fill"]

_Entry = tuple[float, int, int, "_Group | int"]


def fill(st: State) -> None:
    """Give every free slot to the eligible pod least loaded relative to its share."""
    root, path = _tree(st)
    for q, row in enumerate(st.rows):
        if FREE not in row:
            continue
        used: dict[int, int] = {}  # group uid -> slots of this row in it
        for p in row:
            if p != FREE:
                for group in path[p]:
                    used[group.uid] = used.get(group.uid, 0) + 1
        for s in range(st.width):
            if row[s] == FREE:
                p = _pick(st, root, row, used)
                if p == FREE:
                    raise PlacementError(f"no pod fits partition {q} slot {s} (internal)")
                st.set(q, s, p)


def _tree(st: State) -> tuple[_Group, list[list[_Group]]]:
    """Groups for the domains that constrain: zones if capped, nodes if capped."""
    uid = iter(range(1 << 30))
    root = _Group(next(uid), 0.0, st.width)
    path: list[list[_Group]] = [[] for _ in st.ids]
    zones: dict[int, _Group] = {}
    nodes: dict[int, _Group] = {}
    for p in range(len(st.ids)):
        parent = root
        if st.check_zones:
            z = st.zone[p]
            if z not in zones:
                zones[z] = _Group(next(uid), 0.0, st.zone_rank[z])
                root.kids.append(zones[z])
            parent = zones[z]
            path[p].append(parent)
        if st.check_nodes:
            n = st.node[p]
            if n not in nodes:
                nodes[n] = _Group(next(uid), 0.0, st.node_rank[n])
                parent.kids.append(nodes[n])
            parent = nodes[n]
            path[p].append(parent)
        parent.kids.append(p)
        for group in path[p]:
            group.fair += st.fair[p]
            group.held += len(st.held[p])
    _heapify(st, root)
    return root, path


def _heapify(st: State, group: _Group) -> None:
    for kid in group.kids:
        if isinstance(kid, _Group):
            _heapify(st, kid)
            group.heap.append((kid.held / kid.fair, mix(kid.uid, kid.held), kid.uid, kid))
        else:
            held = len(st.held[kid])
            group.heap.append((held / st.fair[kid], mix(st.seed[kid], held), kid, kid))
    heapq.heapify(group.heap)


def _pick(st: State, group: _Group, row: list[int], used: dict[int, int]) -> int:
    """Pop the least loaded eligible pod below `group`, update loads; FREE if none."""
    passed: list[_Entry] = []
    chosen = FREE
    while group.heap and chosen == FREE:
        entry = heapq.heappop(group.heap)
        kid = entry[3]
        if isinstance(kid, _Group):
            if used.get(kid.uid, 0) < kid.rank:
                chosen = _pick(st, kid, row, used)
            if chosen == FREE:
                passed.append(entry)
                continue
            kid.held += 1
            used[kid.uid] = used.get(kid.uid, 0) + 1
            heapq.heappush(group.heap, (kid.held / kid.fair, mix(kid.uid, kid.held), kid.uid, kid))
        elif kid in row:
            passed.append(entry)
        else:
            chosen = kid
            held = len(st.held[kid]) + 1
            entry = (held / st.fair[kid], mix(st.seed[kid], held), kid, kid)
            heapq.heappush(group.heap, entry)
    for entry in passed:
        heapq.heappush(group.heap, entry)
    return chosen


class _Group:
    """A failure domain in the fill tree: its children in a heap ordered by load."""

    __slots__ = ("fair", "heap", "held", "kids", "rank", "uid")

    def __init__(self, uid: int, fair: float, rank: int) -> None:
        self.uid = uid
        self.fair = fair
        self.held = 0
        self.rank = rank  # slots of one partition this domain may hold
        self.kids: list[_Group | int] = []
        self.heap: list[_Entry] = []
