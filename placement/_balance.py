"""Balancing: single-slot moves that bring every pod within its band.

Rules:
- A pod's band is [floor, ceil] of its fair share, widened by the keep slack
  on updates; pods inside it never move for balance (no rounding churn).
- Every move replaces one pod in one slot (`State.set`), so the pods that stay
  in a partition keep their slot and only the moved block needs copying.
- Order: pods above their band shed, then pods below it take, each trying the
  most useful counterpart first; moves that even zone totals come before moves
  inside a zone, because they are possible only in the partitions where the
  zone has room left and must not lose those partitions to moves that could
  have gone anywhere.
- Chains (two moves through a go-between) serve a pod no direct move can.
"""

from __future__ import annotations

from collections.abc import Iterable

from kurastore.placement._state import State

__all__ = ["balance"]


def balance(st: State) -> None:
    """Bring every pod within its band, moving single slots only where needed."""
    _shed(st)
    _take(st)
    for _ in range(3):
        if not st.unbalanced():
            return
        _chains(st)
        _shed(st)
        _take(st)


def _shed(st: State) -> None:
    """Pods above their band hand slots over until they reach ceil(fair).

    Moves that even zone totals go first (they are possible only where
    caps leave room: spending those partitions on moves inside a zone
    would force chains later). Receivers are tried from the most to the
    least in need: below their band, below floor(fair), below ceil(fair),
    below the band's top.
    """
    n, held = len(st.ids), st.held
    over = [p for p in range(n) if len(held[p]) > st.top[p]]
    for order in st.orders():
        for limit in (st.bottom, st.lo, st.hi, st.top):
            for a in sorted(over, key=lambda p: (-st.load(p), p)):
                receivers = [b for b in st.by_need(range(n)) if len(held[b]) < limit[b]]
                for q in st.rotated(a):
                    if len(held[a]) <= st.hi[a]:
                        break
                    s, row = held[a][q], st.rows[q]
                    for b in receivers:
                        if (
                            len(held[b]) < limit[b]
                            and st.zone_order(a, b) == order
                            and st.fits(row, s, b)
                        ):
                            st.set(q, s, b)
                            break


def _take(st: State) -> None:
    """Pods below their band take slots until they reach floor(fair).

    Zone-evening moves first, as in _shed. Donors are tried from the most
    to the least in excess: above their band, above ceil(fair), above
    floor(fair), above the band's bottom.
    """
    n, held, rows = len(st.ids), st.held, st.rows
    under = st.by_need([p for p in range(n) if len(held[p]) < st.bottom[p]])
    for order in st.orders():
        for limit in (st.top, st.hi, st.lo, st.bottom):
            donors = [a for a in range(n) if len(held[a]) > limit[a]]
            donors.sort(key=lambda a: (limit[a] - len(held[a])) / st.fair[a])
            for b in under:
                for a in donors:
                    for q in st.rotated(a):
                        if len(held[a]) <= limit[a] or len(held[b]) >= st.lo[b]:
                            break
                        if st.zone_order(a, b) != order:
                            break
                        if st.fits(rows[q], held[a][q], b):
                            st.set(q, held[a][q], b)


def _chains(st: State) -> None:
    """Serve pods still outside their band through two-move chains.

    When caps forbid every direct move (typically: the taker's zone is full
    in each partition where a donor sits), a chain a -> c -> b moves one
    slot from donor a to a go-between c, and one slot of c elsewhere to b:
    only a and b change counts. The two partitions differ, so each move is
    checked against the rows it changes.
    """
    n, held = len(st.ids), st.held
    for b in st.by_need([p for p in range(n) if len(held[p]) < st.bottom[p]]):
        sources = _slots_for(st, b, range(st.count))
        while len(held[b]) < st.lo[b]:
            donors = [a for a in range(n) if len(held[a]) > st.lo[a]]
            donors.sort(key=lambda a: (st.lo[a] - len(held[a])) / st.fair[a])
            if not _chain(st, b, sources, donors):
                break
    for a in [p for p in range(n) if len(held[p]) > st.top[p]]:
        while len(held[a]) > st.hi[a]:
            receivers = [b for b in st.by_need(range(n)) if len(held[b]) < st.hi[b]]
            if not any(_chain(st, b, _slots_for(st, b, list(held[a])), [a]) for b in receivers):
                break


def _slots_for(st: State, b: int, partitions: Iterable[int]) -> dict[int, list[tuple[int, int]]]:
    """Slots pod b could take now, grouped by their holder: {pod: [(partition, slot)]}."""
    slots: dict[int, list[tuple[int, int]]] = {}
    for q in partitions:
        row = st.rows[q]
        if b in row:
            continue
        for s, c in enumerate(row):
            if st.fits(row, s, b):
                slots.setdefault(c, []).append((q, s))
    return slots


def _chain(st: State, b: int, sources: dict[int, list[tuple[int, int]]], donors: list[int]) -> bool:
    """Move one slot from one of `donors` to b, directly or via a go-between."""
    rows, held = st.rows, st.held
    for a in donors:
        for q, s in sources.get(a, ()):
            if rows[q][s] == a and st.fits(rows[q], s, b):
                st.set(q, s, b)
                return True
        for q2 in st.rotated(a):
            row2, s2 = rows[q2], held[a][q2]
            for c, options in sources.items():
                if c == a or c in row2 or not st.fits(row2, s2, c):
                    continue
                for q1, s1 in options:
                    if q1 != q2 and rows[q1][s1] == c and st.fits(rows[q1], s1, b):
                        st.set(q2, s2, c)
                        st.set(q1, s1, b)
                        return True
    return False
