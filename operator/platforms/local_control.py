"""The local operator inside `kurastore server`: the second implementation of the
operator's platform, driven by the same reconciler as Kubernetes (operator/reconciler.py)
and reporting the same status (operator/status.py).

One pass: read the desired spec (operator/local_spec.py, re-read when the file changed),
observe (pod processes and their readiness, the store's pod registry, health, rebalance
progress, volumes replaced), plan, act, and keep the status. Acting is what a
StatefulSet and the Kubernetes platform do: start the processes of pods the plan sizes
at one and stop those it sizes at zero, then run the store actions (register, drain,
remove, restart, delete a retired pool) through the store's admin interface.

Rules:
- Nothing lives only in memory: the spec and the operator's state are files in the data
  directory, the rest is observed again each pass; a restarted server carries on.
- Passes never overlap (one lock); the background loop runs one every second while
  anything is under way and every few seconds when Ready; the admin hooks run passes
  until their change took effect, so `kurastore admin pods add|drain` answer as before.
- A volume replaced by an empty one (a new volume id) keeps the store Degraded until a
  scrub pass that started after the loss finds every object at k+m healthy blocks and
  nothing waits to be healed.
- The store is reached through StoreAPI: AdminClient's methods, which the gateway's
  in-process PodAdmin also has (the hooks run inside admin requests, so passes must not
  call back into the gateway over HTTP).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from kurastore.operator import reconciler, status
from kurastore.operator.local_spec import (
    SPEC_FILE,
    LocalSpec,
    LocalState,
    apply_changes,
    load_spec,
    local_pod_name,
    next_pod_ids,
    save_spec,
)
from kurastore.operator.platforms.local import LocalPods
from kurastore.operator.reconciler import Observed, ObservedPod, Plan, StoreView
from kurastore.operator.spec import DEFAULT_IMAGE, SpecError

log = logging.getLogger("kurastore.operator.local")

BUSY_S = 1.0
IDLE_S = 5.0
SCRUB_ASK_S = 10.0  # while a volume is being rebuilt, a scrub pass is asked for this often
HOOK_TIMEOUT_S = 90.0


class StoreAPI(Protocol):
    """The admin operations the operator uses (AdminClient has them, so does PodAdmin)."""

    async def list_pods(self) -> dict[str, Any]: ...
    async def status(self) -> dict[str, Any]: ...
    async def maintenance(self) -> dict[str, Any] | None: ...
    async def rebalance(self) -> dict[str, Any] | None: ...
    async def add_pods(self, *, pods: list[dict[str, Any]]) -> dict[str, Any]: ...
    async def drain_pod(self, pod_id: str) -> dict[str, Any]: ...
    async def remove_pod(self, pod_id: str) -> dict[str, Any]: ...
    async def scrub_now(self) -> bool: ...


# --- pure parts ---------------------------------------------------------------------------
def track_volumes(volumes: dict[str, str], lost: dict[str, float],
                  markers: dict[str, str | None], now: float) -> None:
    """Records each pod's volume id; a pod found on a volume with another id lost its
    volume at `now` (a pod seen for the first time just gets its id recorded)."""
    for pod_id, marker in markers.items():
        if marker is None:
            continue  # wiped and not started again yet: judged when it has an id
        known = volumes.get(pod_id)
        if known is not None and known != marker:
            lost[pod_id] = now
            log.warning("pod %s came back on an empty volume: rebuilding", pod_id)
        volumes[pod_id] = marker


def rebuilt(lost: dict[str, float], maintenance: dict[str, Any] | None,
            heal_queue: int, width: int) -> bool:
    """True once a scrub pass that started after every loss covered every pod and found
    every object at k+m healthy blocks, and the heal queue is empty."""
    if not lost:
        return True
    if maintenance is None or heal_queue:
        return False
    scrub = maintenance.get("scrub") or {}
    since = max(lost.values())
    starts = [p.get("last_full_scrub") for p in (scrub.get("pods") or {}).values()]
    if not starts or any(s is None or s < since for s in starts):
        return False
    durability = scrub.get("durability") or {}
    by_blocks = durability.get("objects_by_healthy_blocks") or {}
    return all(int(n) >= width or not c for n, c in by_blocks.items())


def with_lost_volumes(view: StoreView, lost: dict[str, float]) -> StoreView:
    """A store with a volume not yet verified rebuilt is not green."""
    if not lost or not view.reachable or view.health.status != "green":
        return view
    return replace(view, health=replace(view.health, status="yellow"))


def process_changes(replicas: dict[str, int], running: list[str]) -> tuple[list[str],
                                                                            list[str]]:
    """(pods to start, pods to stop): the plan's pool sizes (one or zero) against the
    processes running, as a StatefulSet scales."""
    start = sorted(p for p, n in replicas.items() if n > 0 and p not in running)
    stop = sorted(p for p in running if replicas.get(p, 0) == 0)
    return start, stop


def observed_pods(running: dict[str, str], ready: dict[str, bool]) -> tuple[ObservedPod, ...]:
    """The local pods (id -> url) as the reconciler sees them: each its own pool."""
    return tuple(
        ObservedPod(name=pod_id, pool=pod_id, ordinal=0, ready=ready.get(pod_id, False),
                    url=url, image=DEFAULT_IMAGE)
        for pod_id, url in sorted(running.items()))


# --- the operator -----------------------------------------------------------------------------
class LocalOperator:
    def __init__(self, data_dir: Path, pods: LocalPods, spec: LocalSpec, store: StoreAPI,
                 endpoint: str) -> None:
        self.data_dir = data_dir
        self.pods = pods
        self.spec = spec
        self.store = store
        self.endpoint = endpoint
        self.state = LocalState.load(data_dir)
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._spec_mtime = self._mtime()
        self._refused = False
        self._busy = True
        self._scrub_asked = -SCRUB_ASK_S  # monotonic time of the last scrub_now

    def _mtime(self) -> float:
        try:
            return (self.data_dir / SPEC_FILE).stat().st_mtime
        except OSError:
            return 0.0

    def _save_spec(self, spec: LocalSpec) -> None:
        if spec != self.spec:
            save_spec(self.data_dir, spec)
            self.spec = spec
            self._spec_mtime = self._mtime()

    def _reload_spec(self) -> None:
        """A hand-edited spec file is taken (a broken one is logged and ignored)."""
        mtime = self._mtime()
        if mtime == self._spec_mtime:
            return
        self._spec_mtime = mtime
        try:
            spec = load_spec(self.data_dir)
        except SpecError as exc:
            log.warning("local spec not taken: %s", exc)
            return
        if spec is None:
            return
        if (spec.data_blocks, spec.parity_blocks) != (self.spec.data_blocks,
                                                      self.spec.parity_blocks):
            log.warning("local spec not taken: erasure is immutable")
            return
        self.spec = spec

    # --- observe ------------------------------------------------------------------------
    async def observe(self) -> Observed:
        running = {p.pod_id: p.url for p in self.pods.pods.values()}
        ready = dict(zip(running, await asyncio.gather(
            *(self.pods.ready(p) for p in running)), strict=True))
        view, maintenance = await self._observe_store()
        track_volumes(self.state.volumes, self.state.lost,
                      {p: self.pods.volume_id(p) for p in running}, time.time())
        if self.state.lost and time.monotonic() - self._scrub_asked >= SCRUB_ASK_S:
            # The rebuild starts with a scrub pass that finds the empty pod's shards
            # missing: ask for one now rather than at the next scheduled pass, and again
            # while the loss stands (a pass that ran before the pod answered skips it).
            self._scrub_asked = time.monotonic()
            with contextlib.suppress(Exception):
                await self.store.scrub_now()
        if self.state.lost and view.reachable and rebuilt(
                self.state.lost, maintenance, view.health.heal_queue, self.spec.width):
            log.info("volumes of %s rebuilt: every object at k+m", sorted(self.state.lost))
            self.state.lost.clear()
        view = with_lost_volumes(view, self.state.lost)
        return Observed(pods=observed_pods(running, ready),
                        replicas=dict.fromkeys(running, 1), store=view)

    async def _observe_store(self) -> tuple[StoreView, dict[str, Any] | None]:
        try:
            pods, cluster = await asyncio.gather(self.store.list_pods(), self.store.status())
            maintenance, rebalance = await asyncio.gather(self.store.maintenance(),
                                                          self.store.rebalance())
        except Exception as exc:  # the store's metadata or pods not answering
            log.info("store not answering: %r", exc)
            return StoreView(), None
        return status.store_view(pods, cluster, maintenance, rebalance,
                                 self.spec.parity_blocks), maintenance

    # --- act --------------------------------------------------------------------------
    async def act(self, the_plan: Plan) -> None:
        start, stop = process_changes(the_plan.replicas, list(self.pods.pods))
        if start:
            try:
                await self.pods.add_pods(start)
            except Exception as exc:  # retried next pass, as a pod that is not ready
                log.warning("pods %s did not start: %s", start, exc)
        for pod_id in stop:
            await self._retire(pod_id)
        for action in the_plan.actions:
            log.info("local operator: %s", action)
            try:
                await self._execute(action)
            except Exception as exc:  # refused or failed: observed and planned again
                log.warning("%s failed: %s", action, exc)

    async def _execute(self, action: reconciler.Action) -> None:
        if isinstance(action, reconciler.RegisterPods):
            await self.store.add_pods(pods=[
                {"id": p.pod_id, "url": p.url, "zone": p.zone, "node": p.node}
                for p in action.pods])
        elif isinstance(action, reconciler.DrainPod):
            await self.store.drain_pod(action.pod_id)
        elif isinstance(action, reconciler.RemovePod):
            await self.store.remove_pod(action.pod_id)
        elif isinstance(action, reconciler.RestartPod):
            await self.pods.restart_pod(action.name)
        elif isinstance(action, reconciler.DeletePool):
            await self._retire(action.pool)  # the pool of one is its pod

    async def _retire(self, pod_id: str) -> None:
        """Stops a pod for good; its volume is forgotten (an id used again is a new pod)."""
        await self.pods.remove_pod(pod_id)
        self.state.volumes.pop(pod_id, None)
        self.state.lost.pop(pod_id, None)

    # --- one pass ---------------------------------------------------------------------------
    async def reconcile(self) -> Observed:
        """One pass; returns what it observed (before acting)."""
        async with self._lock:
            return await self._pass()

    async def _pass(self) -> Observed:
        self._reload_spec()
        spec = self.spec.object_spec()
        observed = await self.observe()
        the_plan = reconciler.plan("", spec, observed, name=local_pod_name)
        if not spec.paused:
            await self.act(the_plan)
        refused = bool(the_plan.refusals)
        if refused and not self._refused:
            for refusal in the_plan.refusals:  # the local platform's event
                log.warning("%s: %s", refusal.reason, refusal.message)
        self._refused = refused
        if self.state.lost:
            the_plan = replace(the_plan, waiting=(*the_plan.waiting, "volume of "
                               f"{', '.join(sorted(self.state.lost))} rebuilding until a "
                               "scrub pass finds every object at k+m"))
        doc = status.compute_status(
            spec, observed, the_plan, generation=self.spec.generation,
            endpoints={"s3": self.endpoint, "admin": f"{self.endpoint}/_kura/admin/v1"},
            old_conditions=self.state.status.get("conditions"))
        doc["health"]["volumesRebuilding"] = sorted(self.state.lost)
        self.state.status = doc
        self.state.save(self.data_dir)
        self._busy = bool(the_plan.actions) or doc["phase"] not in ("Ready", "Paused")
        return observed

    async def run(self) -> None:
        """Passes until cancelled: fast while busy, slower when Ready, at once on wake."""
        while True:
            self._busy = True
            try:
                await self.reconcile()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("local reconcile failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(BUSY_S if self._busy else IDLE_S):
                    await self._wake.wait()

    async def _until(self, done: Callable[[Observed], bool], what: str) -> None:
        """Passes until `done` holds for what a pass observed."""
        deadline = time.monotonic() + HOOK_TIMEOUT_S
        while not done(await self.reconcile()):
            if time.monotonic() > deadline:
                raise SpecError(f"{what} did not happen within {HOOK_TIMEOUT_S:.0f} s "
                                f"(phase {self.state.status.get('phase')}: "
                                f"{self.state.status.get('message')})")
            await asyncio.sleep(0.1)
        self._wake.set()

    # --- the admin hooks (gateway/admin/cluster.py LocalPlatform) -----------------------------
    async def add_pods(self, count: int) -> list[tuple[str, str]]:
        """Adds `count` pods to the spec; returns (id, url) once all are registered."""
        async with self._lock:
            self._reload_spec()
            self._not_paused()
            new = next_pod_ids([*self.spec.pods, *self.pods.pods], count)
            self._save_spec(self.spec.changed(pods=(*self.spec.pods, *new)))

        def joined(obs: Observed) -> bool:
            active = {r.pod_id for r in obs.store.registered if r.state == "active"}
            return set(new) <= active

        await self._until(joined, f"pods {', '.join(new)} joining")
        return [(pod_id, self.pods.pods[pod_id].url) for pod_id in new]

    async def drain_pod(self, pod_id: str) -> bool:
        """Takes the pod out of the spec; True once the store drains it (False: not a
        pod of the spec)."""
        async with self._lock:
            self._reload_spec()
            if pod_id not in self.spec.pods:
                return False
            self._not_paused()
            self._save_spec(self.spec.changed(
                pods=tuple(p for p in self.spec.pods if p != pod_id)))

        def draining(obs: Observed) -> bool:
            states = {r.pod_id: r.state for r in obs.store.registered}
            return obs.store.reachable and states.get(pod_id, "removed") != "active"

        await self._until(draining, f"draining {pod_id}")
        return True

    def _not_paused(self) -> None:
        if self.spec.paused:
            raise SpecError("the local spec is paused: nothing would carry the change out "
                            "(kurastore admin spec set --resume)")

    async def remove_pod(self, pod_id: str) -> None:
        """A drained pod removed by hand: out of the spec, its process stopped."""
        async with self._lock:
            if pod_id in self.spec.pods:
                self._save_spec(self.spec.changed(
                    pods=tuple(p for p in self.spec.pods if p != pod_id)))
            await self._retire(pod_id)
            self.state.save(self.data_dir)

    async def set_spec(self, changes: dict[str, Any]) -> dict[str, Any]:
        async with self._lock:
            self._reload_spec()
            self._save_spec(apply_changes(self.spec, changes))
        self._wake.set()
        return await self.spec_doc()

    async def spec_doc(self) -> dict[str, Any]:
        return self.spec.to_doc() | {"status": self.status_doc()}

    def status_doc(self) -> dict[str, Any]:
        return self.state.status or {"phase": "Pending", "message": "not reconciled yet"}
