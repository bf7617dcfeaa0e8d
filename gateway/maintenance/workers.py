"""Maintenance: the healer, the scrubber, the rebalancer and the volume watch of one
gateway, built from its configuration, run together, and reported together (admin API,
metrics).

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
from kurastore.gateway.maintenance.rebalance import Rebalancer, RebalanceSettings
from kurastore.gateway.maintenance.scrub import Scrubber, ScrubSettings
from kurastore.gateway.maintenance.volumes import VolumeWatch
from kurastore.gateway.metrics import GatewayMetrics
from kurastore.gateway.objects.service import ObjectService


class Maintenance:
    def __init__(self, healer: Healer, scrubber: Scrubber, service: ObjectService,
                 rebalancer: Rebalancer) -> None:
        self.healer = healer
        self.scrubber = scrubber
        self._service = service
        self.rebalancer = rebalancer
        # A pod back on an empty volume: a scrub pass at once finds all it lost.
        self.volumes = VolumeWatch(cast(MaintenancePods, service.pods), service.topology,
                                   lambda _pod_id: scrubber.request_pass())

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
        rebalance = RebalanceSettings(rate_bytes_s=config.rebalance_rate_bytes_s,
                                      grace_s=config.rebalance_grace_s,
                                      concurrency=config.rebalance_concurrency)
        rebalancer = Rebalancer(service.store, pods, service.topology, service.config,
                                rebalance, service.health)
        scrubber = Scrubber(service.store, pods, service.topology, scrub,
                            on_heal_queued=healer.wake, keep=rebalancer.holds_old_copy)
        return cls(healer, scrubber, service, rebalancer)

    async def run(self, stop_event: asyncio.Event) -> None:
        """Both workers until `stop_event` is set (each survives its own failures).
        May run again later (when this gateway takes the lease back)."""
        await asyncio.gather(self.healer.run(stop_event), self.scrubber.run(stop_event),
                             self.rebalancer.run(stop_event), self.volumes.run(stop_event))

    def close(self) -> None:
        """At shutdown: the healer's and the rebalancer's CPU pools."""
        self.healer.close()
        self.rebalancer.close()

    async def rebalance_progress(self) -> dict[str, Any]:
        """The admin API's rebalance view, JSON-ready; the epochs pinned are read now,
        so a new epoch shows as work left before the rebalancer's next pass."""
        settings = self.rebalancer.settings
        with contextlib.suppress(Exception):
            await self.rebalancer.look(self._service.topology.current.epoch)
        return self.rebalancer.progress.as_json() | {
            "now": time.time(), "rate_limit_bytes_s": settings.rate_bytes_s,
            "grace_s": settings.grace_s,
        }

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
            "volumes": {"replaced": self.volumes.losses, "known": dict(self.volumes.seen)},
        }

    def export(self, metrics: GatewayMetrics) -> None:
        """Set the self-repair gauges from the workers' progress."""
        heal = self.healer.progress
        metrics.healed_shards.set(heal.healed)
        metrics.heal_bytes.set(heal.bytes_rebuilt)
        metrics.heal_rate.set(heal.meter.rate)
        moving = self.rebalancer.progress
        metrics.rebalance_bytes_moved.set(moving.bytes_moved)
        metrics.rebalance_bytes_left.set(moving.bytes_left)
        metrics.rebalance_partitions_left.set(moving.partitions_left)
        metrics.rebalance_rate.set(moving.meter.rate)
        metrics.rebalance_old_epochs.set(len(moving.old_epochs))
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
