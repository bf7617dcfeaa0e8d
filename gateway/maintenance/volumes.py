"""VolumeWatch: notices a pod that came back on an empty volume, and starts the rebuild.

A pod's volume carries a random id (storage: volume.id, made when an empty volume is
first opened), reported by GET /v1/usage. A pod that answers with an id other than the
one seen before has lost everything its old volume held: a replaced PersistentVolume, a
wiped disk, a pod rescheduled onto a fresh volume. Its shards are then missing in every
partition it serves. Left alone, the scrubber finds them at its next pass (a day apart
by default) and reads repair them one stripe at a time; the watch asks the scrubber for a
pass at once instead, which queues every missing shard for the healer.

Rules: ids are remembered in memory by the gateway that runs maintenance; after its
restart (or when another gateway takes the lease) the first answer of each pod is the
baseline, so a loss while no gateway watched is found by the scheduled pass, as before.
A pod that does not answer is skipped, never counted as lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from kurastore.gateway.maintenance.pods import MaintenancePods, call
from kurastore.gateway.objects.topology import Topology

log = logging.getLogger(__name__)


class VolumeWatch:
    def __init__(
        self,
        pods: MaintenancePods,
        topology: Topology,
        on_lost: Callable[[str], None],
        *,
        interval_s: float = 5.0,
        timeout_s: float = 2.0,
    ) -> None:
        self._pods = pods
        self._topology = topology
        self._on_lost = on_lost
        self.interval_s = interval_s
        self._timeout_s = timeout_s
        self.seen: dict[str, str] = {}  # pod id -> the volume id it last answered with
        self.losses = 0  # volumes found replaced since this gateway started watching

    async def check(self) -> list[str]:
        """Ask every registered pod for its volume id; returns the pods found on a new
        volume (and calls `on_lost` for each)."""
        await self._topology.ensure_fresh()
        pods = [p for p in self._topology.pods if p.state != "removed"]
        answers = await asyncio.gather(
            *(call(self._pods.usage(p.url), self._timeout_s, p.url) for p in pods),
            return_exceptions=True,
        )
        lost = []
        for pod, answer in zip(pods, answers, strict=True):
            if isinstance(answer, BaseException) or not answer.volume_id:
                continue
            known = self.seen.get(pod.pod_id)
            if known is not None and known != answer.volume_id:
                lost.append(pod.pod_id)
            self.seen[pod.pod_id] = answer.volume_id
        for pod_id in lost:
            self.losses += 1
            log.warning("pod %s is on a new, empty volume: scrubbing now to rebuild it", pod_id)
            self._on_lost(pod_id)
        return lost

    async def run(self, stop_event: asyncio.Event) -> None:
        """Check every `interval_s` until `stop_event` is set."""
        while not stop_event.is_set():
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception:  # metadata away for a moment: try again next time
                log.exception("volume check failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval_s):
                    await stop_event.wait()
