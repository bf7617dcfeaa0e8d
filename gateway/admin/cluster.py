"""Publishing the pod set: registers pods and, when the set of pods or their
weights changed, publishes a new placement map (a new epoch). The operator and
`kurastore server` use this; data moves afterwards (rebalancer), reads keep
using the epochs their versions pinned."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

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
    # Parsing, building and serialising a map of thousands of partitions is ~100 ms of
    # CPU: in a thread, so requests in flight keep being served meanwhile.
    previous = await asyncio.to_thread(PlacementMap.from_json, latest[1]) if latest else None
    if previous is not None and _same(previous, specs, width):
        return previous
    new_map = await asyncio.to_thread(build_map, specs, width, previous=previous)
    await store.save_placement_map(new_map.epoch, await asyncio.to_thread(new_map.to_json))
    log.info("placement epoch %d published: %d pods, width %d", new_map.epoch, len(specs), width)
    return new_map


def _same(pmap: PlacementMap, specs: tuple[PodSpec, ...], width: int) -> bool:
    return pmap.width == width and sorted(pmap.pods, key=lambda p: p.pod_id) == list(specs)


# --- pods: add, drain, remove, and what each still holds -----------------------------
class PodRefused(Exception):
    """The pod set change asked for is not allowed now (unknown pod, still holding data)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class LocalPlatform:
    """The local operator's hooks, handed to the gateway by `kurastore server` (the
    gateway never imports the operator). Pod set changes become changes of the desired
    local spec, which the operator's control loop carries out:

    add_pods(count)   adds `count` pods to the spec; returns them once registered
    drain_pod(id)     takes a pod out of the spec; returns once it is draining (False:
                      not a pod of the spec, the gateway drains it itself)
    remove_pod(id)    a drained pod removed by hand: its process stops
    spec()            {"spec": the desired local spec, "status": the ObjectStore status}
    set_spec(doc)     changes the desired spec (pods, paused) and answers as spec()
    status()          the ObjectStore status the last reconcile computed
    """

    add_pods: Callable[[int], Awaitable[list[PodRecord]]]
    remove_pod: Callable[[str], Awaitable[None]]
    drain_pod: Callable[[str], Awaitable[bool]]
    spec: Callable[[], Awaitable[dict[str, Any]]]
    set_spec: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
    status: Callable[[], dict[str, Any]]


class SpecRefused(Exception):
    """A desired spec change the local operator cannot take (bad field, too few pods)."""


async def _pod(store: Store, pod_id: str) -> PodRecord:
    for pod in await store.list_pods():
        if pod.pod_id == pod_id and pod.state != "removed":
            return pod
    raise PodRefused(404, f"no pod {pod_id}")


async def drain_pod(store: Store, pod_id: str, width: int) -> PlacementMap:
    """Marks the pod draining: a new epoch in which it holds nothing. Refused when fewer
    than `width` (k+m) pods would be left to hold the data (as the operator refuses)."""
    pod = await check_drain(store, pod_id, width)
    return await publish_pods(store, [replace(pod, state="draining")], width)


async def check_drain(store: Store, pod_id: str, width: int) -> PodRecord:
    """The pod, if draining it is allowed now; PodRefused (404, 409) otherwise."""
    pod = await _pod(store, pod_id)
    left = [p for p in await store.list_pods()
            if p.state == "active" and p.weight > 0 and p.pod_id != pod_id]
    if pod.state == "active" and len(left) < width:
        raise PodRefused(409, f"draining {pod_id} would leave {len(left)} pods, fewer than "
                              f"k+m = {width}: add a pod first")
    return pod


MapOf = Callable[[int], Awaitable[PlacementMap]]  # epoch -> its map (Topology.get_map)


async def held_by_epochs(store: Store, map_of: MapOf) -> dict[str, set[int]]:
    """pod id -> the epochs in use (pinned by some record) whose map places it.
    `map_of` should cache: parsing a map of 8192 partitions costs ~50 ms, and the local
    control loop asks every second while a rebalance runs."""
    held: dict[str, set[int]] = {}
    for epoch in await store.epochs_in_use():
        pmap = await map_of(epoch)
        for spec in pmap.pods:
            if pmap.partitions_of(spec.pod_id):
                held.setdefault(spec.pod_id, set()).add(epoch)
    return held


ShardCount = Callable[[str], Awaitable[int | None]]  # url -> shards on the pod (None: no answer)


async def pod_views(
    store: Store, current: PlacementMap, waiting_copies: Callable[[str], bool],
    shard_count: ShardCount, map_of: MapOf,
) -> list[dict[str, Any]]:
    """Every registered pod with its share of the current map and whether it still
    holds data: an epoch in use places it, old copies wait out their grace, or the pod
    itself reports shards (e.g. old versions waiting for the collector)."""
    held = await held_by_epochs(store, map_of)
    pods = [p for p in await store.list_pods() if p.state != "removed"]
    counts = await asyncio.gather(*(shard_count(p.url) for p in pods))
    out = []
    for pod, shards in zip(pods, counts, strict=True):
        epochs = sorted(held.get(pod.pod_id, ()))
        old_copies = waiting_copies(pod.pod_id)
        out.append({
            "id": pod.pod_id, "url": pod.url, "zone": pod.zone, "node": pod.node,
            "weight": pod.weight, "state": pod.state,
            "slots": len(current.partitions_of(pod.pod_id)),
            "pinned_epochs": epochs, "old_copies_waiting": old_copies, "shards": shards,
            "empty": not epochs and not old_copies and shards == 0,
        })
    return out


async def remove_pod(
    store: Store, pod_id: str, width: int, waiting_copies: Callable[[str], bool],
    shard_count: ShardCount, map_of: MapOf,
) -> PlacementMap:
    """Takes a drained pod out of the registry; refused while it may hold shards."""
    pod = await _pod(store, pod_id)
    if pod.state != "draining":
        raise PodRefused(409, f"pod {pod_id} is not draining: drain it first")
    epochs = sorted((await held_by_epochs(store, map_of)).get(pod_id, ()))
    if epochs:
        raise PodRefused(409, f"pod {pod_id} still holds shards of epochs {epochs}")
    if waiting_copies(pod_id):
        raise PodRefused(409, f"pod {pod_id} still holds old copies waiting out their grace")
    shards = await shard_count(pod.url)
    if shards != 0:
        raise PodRefused(409, f"pod {pod_id} still holds {shards} shards (not yet collected)"
                         if shards is not None else f"pod {pod_id} does not answer")
    return await publish_pods(store, [replace(pod, state="removed")], width)


async def was_removed(store: Store, pod_id: str) -> bool:
    """True when the registry keeps `pod_id` as removed (and not registered again)."""
    return any(p.pod_id == pod_id and p.state == "removed" for p in await store.list_pods())
