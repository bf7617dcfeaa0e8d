"""Maintenance: the healer and the scrubber of one gateway, built from its
configuration, run together, and reported together (admin API, metrics).

Rules: built by the composition root (gateway/app.py) from the object service's
own store, pod client, topology and pod-health tracker, so the workers and the
data path see one picture of the cluster. Reporting is read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, cast

from kurastore.gateway.config import GatewayConfig
from kurastore.gateway.maintenance.heal import Healer, HealSettings
from kurastore.gateway.maintenance.pods import MaintenancePods
from kurastore.gateway.maintenance.scrub import Scrubber, ScrubSettings
from kurastore.gateway.metrics import GatewayMetrics
from kurastore.gateway.objects.service import ObjectService


class Maintenance:
    def __init__(self, healer: Healer, scrubber: Scrubber, service: ObjectService) -> None:
        self.healer = healer
        self.scrubber = scrubber
        self._service = service

    @classmethod
    def for_service(cls, service: ObjectService, config: GatewayConfig) -> Maintenance:
        pods = cast(MaintenancePods, service.pods)  # PodClient: the full pod API
        heal = HealSettings(rate_bytes_s=config.heal_rate_bytes_s,
                            interval_s=config.heal_interval_s, retry_s=config.heal_retry_s)
        scrub = ScrubSettings(rate_bytes_s=config.scrub_rate_bytes_s,
                              interval_s=config.scrub_interval_s,
                              orphan_grace_s=config.orphan_grace_s)
        healer = Healer(service.store, pods, service.topology, service.config, heal,
                        service.health)
        scrubber = Scrubber(service.store, pods, service.topology, scrub,
                            on_heal_queued=healer.wake)
        return cls(healer, scrubber, service)

    async def run(self, stop_event: asyncio.Event) -> None:
        """Both workers until `stop_event` is set (each survives its own failures).
        May run again later (when this gateway takes the lease back)."""
        await asyncio.gather(self.healer.run(stop_event), self.scrubber.run(stop_event))

    def close(self) -> None:
        """At shutdown: the healer's CPU pool."""
        self.healer.close()

    async def progress(self) -> dict[str, Any]:
        """The admin API's maintenance view, JSON-ready."""
        heal = self.healer.progress
        with contextlib.suppress(Exception):
            heal.queued = await self._service.store.heal_queue_length()
        cfg = self._service.config
        return {
            "k": cfg.k, "m": cfg.m, "now": time.time(),
            "heal": heal.as_json() | {"rate_limit_bytes_s": self.healer.settings.rate_bytes_s},
            "scrub": self.scrubber.progress.as_json(self.scrubber.pod_ids()) | {
                "rate_limit_bytes_s": self.scrubber.settings.rate_bytes_s,
                "interval_s": self.scrubber.settings.interval_s,
            },
        }

    def export(self, metrics: GatewayMetrics) -> None:
        """Set the self-repair gauges from the workers' progress."""
        heal = self.healer.progress
        metrics.healed_shards.set(heal.healed)
        metrics.heal_bytes.set(heal.bytes_rebuilt)
        metrics.heal_rate.set(heal.meter.rate)
        scrub = self.scrubber.progress
        pod_ids = self.scrubber.pod_ids()
        for pod_id in pod_ids:
            pod = scrub.pod(pod_id)
            metrics.scrub_shards.labels(pod_id).set(pod.shards_checked)
            metrics.scrub_bytes.labels(pod_id).set(pod.bytes_checked)
            for kind in ("corrupt", "missing", "orphans"):
                metrics.scrub_found.labels(pod_id, kind).set(getattr(pod, kind))
            if pod.last_full_scrub is not None:
                metrics.scrub_last_full.labels(pod_id).set(pod.last_full_scrub)
        metrics.oldest_unscrubbed.set(scrub.oldest_unscrubbed_s(pod_ids))
        cfg = self._service.config
        durability = scrub.durability
        # Every level from k to k+m is always present (0 when empty), plus any other seen.
        levels = set(range(cfg.k, cfg.k + cfg.m + 1)) | set(durability.objects)
        for level in sorted(levels):
            metrics.durability_objects.labels(str(level)).set(durability.objects.get(level, 0))
            metrics.durability_bytes.labels(str(level)).set(durability.bytes.get(level, 0))
