"""PodConfig: everything one storage pod needs, validated once, then passed explicitly.

Rules:
- Frozen and typed; `__post_init__` refuses nonsense so a pod never starts half-configured.
- The secret is never shown: `repr=False`, and `read_secret_file` only returns bytes.
- Loading (CLI flags, TOML `[pod]` table, KURASTORE_POD_* variables) happens only in the
  entrypoint, `kurastore.storage.__main__`; this module reads no environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

__all__ = ["MIN_SECRET_BYTES", "PodConfig", "read_secret_file"]

MIN_SECRET_BYTES = 16


@dataclass(frozen=True)
class PodConfig:
    """One pod: its data directory, where it listens, the cluster secret and its limits.

    `capacity_bytes` is a quota: when set, the pod reports it as its capacity and answers
    507 (as for a full disk) to a write that would take shard bytes above it; when None the
    volume's own size applies.

    Memory per upload in flight is bounded by 2 x write_batch_bytes (one batch being
    filled, one being written) + 2 x read_buffer_bytes (aiohttp pauses the socket above
    that); bodies up to write_batch_bytes are taken whole and written in one step.
    """

    data_dir: Path
    secret: bytes = field(repr=False)
    host: str = "127.0.0.1"
    port: int = 9101
    pod_id: str | None = None
    capacity_bytes: int | None = None
    io_threads: int = 32  # fsync-bound: more threads let the journal group commits
    write_batch_bytes: int = 4 << 20
    read_buffer_bytes: int = 1 << 20
    max_shard_bytes: int = 16 << 30
    max_clock_skew_s: float = 300.0
    metrics_public: bool = False
    shutdown_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        if not isinstance(self.secret, bytes) or len(self.secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the cluster secret must be at least {MIN_SECRET_BYTES} bytes")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} out of range")
        if self.capacity_bytes is not None and self.capacity_bytes < 0:
            raise ValueError("capacity_bytes must be >= 0")
        if not 1 <= self.io_threads <= 256:
            raise ValueError("io_threads must be in 1..256")
        if not 4096 <= self.write_batch_bytes <= 64 << 20:
            raise ValueError("write_batch_bytes must be in 4 KiB..64 MiB")
        if not 64 << 10 <= self.read_buffer_bytes <= 64 << 20:
            raise ValueError("read_buffer_bytes must be in 64 KiB..64 MiB")
        if self.max_shard_bytes <= 0:
            raise ValueError("max_shard_bytes must be > 0")
        if self.max_clock_skew_s <= 0:
            raise ValueError("max_clock_skew_s must be > 0")

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> PodConfig:
        """Build from a TOML-like table; `secret_file` is read, unknown keys are refused."""
        values = dict(values)
        if "secret_file" in values:
            values["secret"] = read_secret_file(Path(values.pop("secret_file")))
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown pod settings: {', '.join(unknown)}")
        return cls(**values)


def read_secret_file(path: Path) -> bytes:
    """Read the cluster secret from `path` (surrounding whitespace dropped)."""
    secret = Path(path).read_bytes().strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"secret file {path} holds fewer than {MIN_SECRET_BYTES} bytes")
    return secret
