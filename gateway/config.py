"""Gateway configuration: one frozen value built by the entry point and passed
explicitly. Nothing else in the gateway reads the environment."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GatewayConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 9000
    metadata_path: str = "metadata.db"  # SQLite file
    cluster_secret: bytes = b""  # proves the gateway to the pods
    metadata_key: bytes = b""  # 32 bytes: encrypts access-key secrets at rest
    region: str = "us-east-1"
    # Virtual-host-style addressing: "<bucket>.<domain>". None: path style only.
    domain: str | None = None
    k: int = 4
    m: int = 2
    stripe_size: int = 1 << 20
    inline_threshold_bytes: int = 64 * 1024
    collect_interval_s: float = 5.0
    # How long an unfinished write may stay pending before its shards are
    # considered orphans (a PUT slower than this is cut off by the collector).
    pending_grace_s: float = 6 * 3600.0
    max_connections: int = 1024
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.cluster_secret) < 16:
            raise ValueError("cluster_secret must be at least 16 bytes")
        if len(self.metadata_key) != 32:
            raise ValueError("metadata_key must be 32 bytes")
        if not 1 <= self.listen_port <= 65535 and self.listen_port != 0:
            raise ValueError("listen_port out of range")
