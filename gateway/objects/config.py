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
    read_batch_bytes: int = 1 * MiB  # per pod request of a GET (a run of frames)
    read_prefetch_batches: int = 1  # per GET: batches fetched ahead of the client
    cpu_threads: int = 2  # the executor for zfec and hashing
    offload_bytes: int = 256 * KiB  # hash on the loop below this, in the executor above
    pod_timeout_s: float = 30.0  # one pod call (or one stalled stream step)
    collect_grace_s: float = 6 * 3600.0  # a pending write older than this is abandoned
    collect_retry_s: float = 60.0  # a collect item a pod could not serve waits this long
    identity_cache_s: float = 5.0  # access-key lookups are cached this long

    def __post_init__(self) -> None:
        if not (1 <= self.k <= 64 and 0 <= self.m <= 32):
            raise ValueError(f"k={self.k}, m={self.m} out of range")
        if self.stripe_size <= 0 or self.stripe_size % self.k:
            raise ValueError("stripe_size must be a positive multiple of k")
        if self.write_quorum == 0:
            object.__setattr__(self, "write_quorum", min(self.k + 1, self.k + self.m))
        if not self.k <= self.write_quorum <= self.k + self.m:
            raise ValueError(f"write_quorum must be in {self.k}..{self.k + self.m}")
        if self.inline_threshold_bytes < 0:
            raise ValueError("inline_threshold_bytes must be >= 0")
        for name in ("stripes_in_flight", "read_batch_bytes", "read_prefetch_batches",
                     "cpu_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.pod_timeout_s <= 0:
            raise ValueError("pod_timeout_s must be > 0")

    @property
    def width(self) -> int:
        return self.k + self.m

    @property
    def block_size(self) -> int:
        return self.stripe_size // self.k


@dataclass
class ServiceStats:
    """Monotonic counters the metrics layer reads (never reset)."""

    degraded_reads: int = 0  # GETs that had to read parity or decode
    degraded_stripes: int = 0  # stripes rebuilt from parity
    quorum_failures: int = 0  # writes refused for want of pods
    dropped_shards: int = 0  # shards a write lost to a failing pod (queued for healing)
    bytes_written: int = 0  # object bytes committed
    bytes_read: int = 0  # object bytes handed to readers
