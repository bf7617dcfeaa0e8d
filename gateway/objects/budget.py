"""ReadBudget: the bytes all GETs of one gateway may hold in large batches at once.

A GET holds a batch of stripes (up to `read_batch_bytes` per pod request, times k) while
the client takes it, and fetches the next one meanwhile: sixteen clients reading 64 MiB
objects held about a GiB. Each batch is charged here before its pod requests start and
given back once the client has taken it (get.py, StripeReader).

Rules:
- Nobody waits for the budget. A GET whose batch does not fit reads that batch one
  stripe at a time, nothing ahead and uncharged: slower (a pod request per block per
  stripe) but never stuck behind clients that read slowly, and never a lock-up. So a
  gateway's GETs hold at most the budget plus one stripe each (max_in_flight_requests
  bounds those).
- A charge larger than the whole budget is cut to the budget: a lone huge read still
  gets its batches.
"""

from __future__ import annotations

__all__ = ["ReadBudget"]


class ReadBudget:
    def __init__(self, limit_bytes: int) -> None:
        if limit_bytes < 1:
            raise ValueError("a read budget must be at least 1 byte")
        self.limit = limit_bytes
        self.held = 0

    def try_take(self, nbytes: int) -> int:
        """Take `nbytes` (cut to the limit) if that much is free; the amount taken (to
        give back), or 0."""
        charge = max(1, min(nbytes, self.limit))
        if self.held + charge > self.limit:
            return 0
        self.held += charge
        return charge

    def give(self, charge: int) -> None:
        """Give back a charge `try_take` returned."""
        self.held -= charge
