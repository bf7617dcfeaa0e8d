"""ObjectConfig: the object service's settings, and ServiceStats, its counters.

Rules:
- Frozen and validated once; every bound on memory or concurrency the data path
  uses (stripes in flight, read batch, prefetch, threads) is named here.
- Nothing here reads the environment: the composition root builds the value.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1 << 20
KiB = 1 << 10

# S3: every part of a multipart upload but the last is at least 5 MiB.
MIN_PART_SIZE = 5 * MiB
MAX_PART_NUMBER = 10_000


@dataclass(frozen=True)
class ObjectConfig:
    k: int = 4
    m: int = 2
    stripe_size: int = 1 * MiB  # object bytes per stripe (k blocks)
    write_quorum: int = 0  # shards that must be stored; 0 means k + 1 (capped at k + m)
    inline_threshold_bytes: int = 64 * KiB  # bodies up to this live in the record
    stripes_in_flight: int = 2  # per PUT: encoded stripes waiting for the pods
    # A part of known length up to this is received whole and its shards sent in one
    # burst (burst.py); 0 streams every part. Two stripes: what a streamed write holds.
    burst_bytes: int = 2 * MiB
    # Per pod request of a GET (a run of frames). Measured: 1 MiB costs the pods
    # 2.1 CPU-s/GiB served, 4 MiB 0.6 (a pod request costs ~1-2 ms of CPU).
    read_batch_bytes: int = 4 * MiB
    read_prefetch_batches: int = 1  # per GET: batches fetched ahead of the client
    # All GETs of the gateway together: stripes held in large batches (budget.py).
    read_buffer_bytes: int = 256 * MiB
    # All PUTs of the gateway together: encoded stripes on their way to the pods; a
    # stripe that does not fit waits at most write_budget_wait_s (budget.py).
    write_buffer_bytes: int = 256 * MiB
    write_budget_wait_s: float = 5.0
    cpu_threads: int = 2  # the executor for zfec and hashing
    offload_bytes: int = 256 * KiB  # hash on the loop below this, in the executor above
    pod_timeout_s: float = 30.0  # one pod call (or one stalled stream step): the hard bound
    # Hedged reads: a shard read not answered after max(hedge_min_s, factor x the pod's
    # usual latency), capped, gets parity read beside it; the first k good blocks win.
    hedge_min_s: float = 0.5
    hedge_latency_factor: float = 4.0
    hedge_max_s: float = 2.0
    # Writes: once the other shard streams took a stripe (or answered), a stream still
    # behind gets max(grace_min_s, grace_factor x the time they took), then is dropped.
    straggler_grace_min_s: float = 1.0
    straggler_grace_factor: float = 0.5
    suspect_grace_s: float = 0.25  # the most a write waits on a suspect pod beyond the others
    # A read that has to go to a suspect pod (more than m of a stripe's pods in trouble)
    # waits this long for it, not pod_timeout_s: the client gets its 503 and retries.
    suspect_read_timeout_s: float = 5.0
    # A pod that failed or timed out is suspect this long, doubling while it keeps failing.
    suspect_cooldown_s: float = 10.0
    suspect_cooldown_max_s: float = 160.0
    # A status probe of one pod (readiness, cluster status): short, so a hung pod makes
    # /readyz slower by this much, not by pod_timeout_s.
    status_timeout_s: float = 2.0
    collect_grace_s: float = 6 * 3600.0  # a pending write older than this is abandoned
    collect_retry_s: float = 60.0  # a collect item a pod could not serve waits this long
    identity_cache_s: float = 5.0  # access-key lookups are cached this long
    bucket_cache_s: float = 1.0  # bucket records are cached this long (see buckets.py)

    def __post_init__(self) -> None:
        if not (1 <= self.k <= 64 and 0 <= self.m <= 32):
            raise ValueError(f"k={self.k}, m={self.m} out of range")
        if self.stripe_size <= 0 or self.stripe_size % self.k:
            raise ValueError("stripe_size must be a positive multiple of k")
        if self.write_quorum == 0:
            object.__setattr__(self, "write_quorum", min(self.k + 1, self.k + self.m))
        if not self.k <= self.write_quorum <= self.k + self.m:
            raise ValueError(f"write_quorum must be in {self.k}..{self.k + self.m}")
        for name in ("inline_threshold_bytes", "burst_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("stripes_in_flight", "read_batch_bytes", "read_prefetch_batches",
                     "read_buffer_bytes", "write_buffer_bytes", "cpu_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        for name in ("pod_timeout_s", "hedge_min_s", "hedge_max_s", "straggler_grace_min_s",
                     "suspect_cooldown_s", "status_timeout_s", "suspect_read_timeout_s",
                     "write_budget_wait_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0")
        for name in ("hedge_latency_factor", "straggler_grace_factor", "suspect_grace_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.hedge_max_s < self.hedge_min_s:
            raise ValueError("hedge_max_s must be >= hedge_min_s")
        if self.suspect_cooldown_max_s < self.suspect_cooldown_s:
            raise ValueError("suspect_cooldown_max_s must be >= suspect_cooldown_s")

    @property
    def width(self) -> int:
        return self.k + self.m

    @property
    def block_size(self) -> int:
        return self.stripe_size // self.k

    def straggler_grace_s(self, elapsed_s: float) -> float:
        """How long a write waits on a stream still behind when the others took `elapsed_s`:
        proportional, so a cluster that is slow everywhere drops nobody."""
        return max(self.straggler_grace_min_s, self.straggler_grace_factor * elapsed_s)


@dataclass
class ServiceStats:
    """Monotonic counters the metrics layer reads (never reset)."""

    degraded_reads: int = 0  # GETs that had to read parity or decode
    degraded_stripes: int = 0  # stripes rebuilt from parity
    quorum_failures: int = 0  # writes refused for want of pods
    dropped_shards: int = 0  # shards a write lost to a failing pod (queued for healing)
    bytes_written: int = 0  # object bytes committed
    bytes_read: int = 0  # object bytes handed to readers
    hedged_reads: int = 0  # shard reads that outlived their hedge delay (parity read instead)
    stalled_shards: int = 0  # shard streams writes dropped for stalling (hung or far behind)
