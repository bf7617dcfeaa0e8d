"""Gateway configuration: one frozen value built by the entry point and passed
explicitly. Nothing else in the gateway reads the environment."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class GatewayConfig:
    listen_host: str = "127.0.0.1"
    listen_port: int = 9000
    metadata_path: str = "metadata.db"  # SQLite file
    # PostgreSQL DSN (postgresql://...): shared metadata for many gateways; when set,
    # metadata_path is not used.
    metadata_dsn: str | None = None
    metadata_pool_size: int = 16  # PostgreSQL connections of this gateway, at most
    # The maintenance lease: the holder renews every ttl/3; a dead holder's workers
    # resume on another gateway within ttl * 4/3.
    lease_ttl_s: float = 15.0
    cluster_secret: bytes = b""  # proves the gateway to the pods
    metadata_key: bytes = b""  # 32 bytes: encrypts access-key secrets at rest
    region: str = "us-east-1"
    # Virtual-host-style addressing: "<bucket>.<domain>". None: path style only.
    domain: str | None = None
    k: int = 4
    m: int = 2
    stripe_size: int = 1 << 20
    inline_threshold_bytes: int = 64 * 1024
    # Stripes all GETs together hold in large batches; beyond it a GET reads a stripe at
    # a time (gateway/objects/budget.py).
    read_buffer_bytes: int = 256 << 20
    # Encoded stripes all PUTs together hold on their way to the pods; beyond it a
    # stripe waits (at most a few seconds) for room (gateway/objects/budget.py).
    write_buffer_bytes: int = 256 << 20
    collect_interval_s: float = 5.0
    # How long an unfinished write may stay pending before its shards are
    # considered orphans (a PUT slower than this is cut off by the collector).
    pending_grace_s: float = 6 * 3600.0
    max_connections: int = 1024
    # Overload and slow clients (gateway/admission.py). S3 and Swift requests served at
    # once; more wait up to queue_wait_s in a line of at most max_queued_requests; the
    # rest are answered 503 SlowDown at once. Probes and the admin API are exempt.
    max_in_flight_requests: int = 256
    max_queued_requests: int = 1024
    queue_wait_s: float = 2.0
    # Idle keep-alive connections (and headers that never complete) are closed after
    # idle_timeout_s; a body slower than min_body_rate_bytes_s over client_timeout_s is
    # cut off (RequestTimeout), a client not reading its answer for client_timeout_s dropped.
    idle_timeout_s: float = 30.0
    client_timeout_s: float = 30.0
    min_body_rate_bytes_s: float = 4096.0
    # Swift: lifetime of the tokens /auth/v1.0 issues; the expiry worker's pass interval.
    swift_token_lifetime_s: float = 24 * 3600.0
    expiry_interval_s: float = 60.0
    # S3 lifecycle rules (maintenance/lifecycle.py): the length of their "day"; shorter
    # only to try rules out (passes then run every quarter day, at most hourly).
    lifecycle_day_s: float = 86_400.0
    # Self-repair (gateway/maintenance): heal promptly, scrub slowly. Rates are pod
    # bytes per second (0: unlimited); a scrub pass starts every scrub_interval_s.
    heal_rate_bytes_s: float = 64 * (1 << 20)
    heal_interval_s: float = 2.0  # queue polling while idle
    heal_retry_s: float = 10.0  # an item whose pod is down waits this long
    scrub_rate_bytes_s: float = 4 * (1 << 20)
    scrub_interval_s: float = 24 * 3600.0
    # An unreferenced shard younger than this is never queued for collection.
    orphan_grace_s: float = 3600.0
    # Rebalancing (gateway/maintenance/rebalance.py): pod bytes per second moving shards
    # to a new epoch's pods (0: unlimited), and how long old copies outlive the re-pin.
    rebalance_rate_bytes_s: float = 32 * (1 << 20)
    rebalance_grace_s: float = 300.0
    rebalance_concurrency: int = 2  # partitions moved at once
    # S3 server access logs (gateway/s3/server_log_delivery.py): a source bucket's records
    # become a log object every server_log_roll_s (AWS delivers within minutes to hours),
    # or at server_log_object_bytes; at most server_log_buffer_bytes are held in all.
    server_log_roll_s: float = 300.0
    server_log_object_bytes: int = 8 << 20
    server_log_buffer_bytes: int = 64 << 20
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.cluster_secret) < 16:
            raise ValueError("cluster_secret must be at least 16 bytes")
        if len(self.metadata_key) != 32:
            raise ValueError("metadata_key must be 32 bytes")
        if not 1 <= self.listen_port <= 65535 and self.listen_port != 0:
            raise ValueError("listen_port out of range")
