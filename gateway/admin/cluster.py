"""Publishing the pod set: registers pods and, when the set of pods or their
weights changed, publishes a new placement map (a new epoch). The operator and
`kurastore server` use this; data moves afterwards (rebalancer), reads keep
using the epochs their versions pinned."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from kurastore.metadata import PodRecord, Store
from kurastore.placement import PlacementMap, PodSpec, build_map

log = logging.getLogger("kurastore.admin")


def _specs(pods: Sequence[PodRecord]) -> tuple[PodSpec, ...]:
    return tuple(
        PodSpec(
            pod_id=p.pod_id, zone=p.zone, node=p.node,
            weight=0.0 if p.state == "draining" else p.weight,
        )
        for p in sorted(pods, key=lambda p: p.pod_id)
        if p.state != "removed"
    )


async def publish_pods(store: Store, pods: Sequence[PodRecord], width: int) -> PlacementMap:
    """Registers `pods` (url, zone, weight, state) and returns the current map,
    building and saving a new epoch only if placement-relevant facts changed."""
    for pod in pods:
        await store.put_pod(pod)
    registered = await store.list_pods()
    specs = _specs(registered)
    latest = await store.latest_placement_map()
    previous = PlacementMap.from_json(latest[1]) if latest else None
    if previous is not None and _same(previous, specs, width):
        return previous
    new_map = build_map(specs, width, previous=previous)
    await store.save_placement_map(new_map.epoch, new_map.to_json())
    log.info("placement epoch %d published: %d pods, width %d", new_map.epoch, len(specs), width)
    return new_map


def _same(pmap: PlacementMap, specs: tuple[PodSpec, ...], width: int) -> bool:
    return pmap.width == width and sorted(pmap.pods, key=lambda p: p.pod_id) == list(specs)
