"""What a pod tells operators: Prometheus metrics (its own registry) and the access log.

Rules:
- One registry per pod app, so several apps in one process (tests, `kurastore server`) never
  collide or share counts.
- One access-log line per request, JSON, with method, path, status, bytes in and out and
  duration; request headers are never logged, so neither is the auth header (the secret is
  not in the path or query either). At INFO (the default) only the requests that failed
  (status 400 and up, 499 for a client gone) or took `SLOW_REQUEST_S` or longer are
  written; every one at DEBUG (KURASTORE_LOG_LEVEL=debug). Why: a pod answers k+m shard
  requests per object written and k per object read, a line costs about 45 us of CPU
  with its write (measured on these VMs), and the gateway already logs every client
  request with its request id, which the pods' lines carry too.
- Operation names are the route names (`PutShard`, `GetShard`, ...): the same word in the
  router, the log and the metrics.
"""

from __future__ import annotations

import json
import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from kurastore.storage.api import PodUsage

__all__ = ["ACCESS_LOG", "CONTENT_TYPE_LATEST", "SLOW_REQUEST_S", "PodMetrics"]

ACCESS_LOG = logging.getLogger("kurastore.storage.access")
SLOW_REQUEST_S = 1.0  # a request this slow is logged at INFO even when it succeeded

_LATENCY_BUCKETS_S = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)


class PodMetrics:
    """The pod's counters, histogram and gauges, plus the access log writer."""

    def __init__(self, pod_id: str | None = None) -> None:
        self.pod_id = pod_id
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "kurastore_pod_requests",
            "Requests handled by the pod, by operation and status.",
            ("op", "status"),
            registry=self.registry,
        )
        self.bytes_received = Counter(
            "kurastore_pod_received_bytes",
            "Shard bytes received in request bodies.",
            registry=self.registry,
        )
        self.bytes_sent = Counter(
            "kurastore_pod_sent_bytes",
            "Bytes sent in response bodies.",
            registry=self.registry,
        )
        self.duration = Histogram(
            "kurastore_pod_request_duration_seconds",
            "Time from request start to the last byte of the response, by operation.",
            ("op",),
            buckets=_LATENCY_BUCKETS_S,
            registry=self.registry,
        )
        self.capacity = Gauge(
            "kurastore_pod_capacity_bytes", "Capacity of the pod's volume or quota.",
            registry=self.registry,
        )
        self.used = Gauge(
            "kurastore_pod_used_bytes", "Bytes of shards held.", registry=self.registry
        )
        self.free = Gauge(
            "kurastore_pod_free_bytes", "Bytes still writable.", registry=self.registry
        )
        self.shards = Gauge(
            "kurastore_pod_shards", "Shards stored.", registry=self.registry
        )
        self.packs = Gauge(
            "kurastore_pod_packs", "Pack files (small shards appended).",
            registry=self.registry,
        )
        self.pack_bytes = Gauge(
            "kurastore_pod_pack_bytes", "Bytes in pack files, live or not yet compacted.",
            registry=self.registry,
        )
        self.pack_live_bytes = Gauge(
            "kurastore_pod_pack_live_bytes", "Bytes of pack records still live.",
            registry=self.registry,
        )

    def observe(
        self,
        *,
        op: str,
        method: str,
        path: str,
        status: int,
        bytes_in: int,
        bytes_out: int,
        duration_s: float,
        remote: str | None,
        request_id: str | None,
    ) -> None:
        """Count one finished request and write its access-log line."""
        self.requests.labels(op, str(status)).inc()
        self.duration.labels(op).observe(duration_s)
        if bytes_in:
            self.bytes_received.inc(bytes_in)
        if bytes_out:
            self.bytes_sent.inc(bytes_out)
        notable = status >= 400 or duration_s >= SLOW_REQUEST_S
        level = logging.INFO if notable else logging.DEBUG
        if ACCESS_LOG.isEnabledFor(level):
            line = {
                "pod": self.pod_id,
                "op": op,
                "method": method,
                "path": path,
                "status": status,
                "bytes_in": bytes_in,
                "bytes_out": bytes_out,
                "duration_ms": round(duration_s * 1000, 3),
                "remote": remote,
                "request_id": request_id,
            }
            ACCESS_LOG.log(level, json.dumps(line, separators=(",", ":")))

    def render(self, usage: PodUsage, packs: tuple[int, int, int] = (0, 0, 0)) -> bytes:
        """The Prometheus text exposition, with the usage gauges refreshed first (`packs`:
        files, bytes, live bytes, as PackStore.footprint gives them)."""
        self.packs.set(packs[0])
        self.pack_bytes.set(packs[1])
        self.pack_live_bytes.set(packs[2])
        self.capacity.set(usage.capacity_bytes)
        self.used.set(usage.used_bytes)
        self.free.set(usage.free_bytes)
        self.shards.set(usage.shards)
        return generate_latest(self.registry)
