"""The reconciler: desired spec + observed state -> a plan (StatefulSet sizes and the
store actions to take now). Pure functions only; the platforms observe and execute.

Rules, the same on every platform:
- Pods join the store only when ready, all new pods of a change in one registration (one
  new epoch, so the data moves once). The first registration waits for every pod.
- Scale in drains first: a pod leaves its StatefulSet only after the store reports it
  empty and the operator removed it from the pod set. A scale in that would leave fewer
  pods than k+m is refused (a refusal: a condition and an event, never an exception).
- A rolling upgrade restarts one pod at a time, and only while the store is green: every
  pod ready and registered, no rebalance under way, nothing waiting to heal.
- Paused: no action at all. Every decision is re-derived from observation each time, so
  an operator restarted mid-operation carries on where the cluster stands.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from kurastore.operator.spec import ObjectStoreSpec, Pool


@dataclass(frozen=True)
class ObservedPod:
    """One storage pod as the platform sees it (a Kubernetes Pod or a local process)."""

    name: str  # also its pod id in the store
    pool: str
    ordinal: int
    ready: bool
    url: str | None  # the address it is registered by; None until it has one
    image: str = ""
    deleting: bool = False


@dataclass(frozen=True)
class RegisteredPod:
    """One pod in the store's registry (admin API GET /pods)."""

    pod_id: str
    url: str
    state: str  # active | draining
    empty: bool = False
    slots: int = 0


@dataclass(frozen=True)
class Health:
    status: str = "unknown"  # green | yellow | red | unknown
    pods_online: int = 0
    pods_offline: int = 0
    heal_queue: int = 0
    objects_degraded: int = 0


@dataclass(frozen=True)
class Rebalance:
    done: bool = True
    target_epoch: int | None = None
    partitions_moved: int = 0
    partitions_left: int = 0
    bytes_moved: int = 0
    bytes_left: int = 0
    rate_bytes_s: float = 0.0
    eta_s: float | None = None
    old_copies_waiting: int = 0


@dataclass(frozen=True)
class StoreView:
    """What the admin API said; reachable False when the gateway did not answer."""

    reachable: bool = False
    epoch: int | None = None
    registered: tuple[RegisteredPod, ...] = ()
    health: Health = Health()
    rebalance: Rebalance = Rebalance()
    capacity_bytes: int = 0
    used_bytes: int = 0


@dataclass(frozen=True)
class Observed:
    pods: tuple[ObservedPod, ...] = ()
    replicas: dict[str, int] = field(default_factory=dict)  # StatefulSet sizes now
    store: StoreView = StoreView()


# --- actions -------------------------------------------------------------------------
@dataclass(frozen=True)
class PodRegistration:
    pod_id: str
    url: str
    zone: str = ""
    node: str = ""


@dataclass(frozen=True)
class RegisterPods:
    pods: tuple[PodRegistration, ...]


@dataclass(frozen=True)
class DrainPod:
    pod_id: str


@dataclass(frozen=True)
class RemovePod:
    pod_id: str


@dataclass(frozen=True)
class RestartPod:
    """Delete the pod so its StatefulSet (OnDelete) recreates it from the new template."""

    name: str


@dataclass(frozen=True)
class DeletePool:
    """A pool gone from the spec whose pods are all drained and removed."""

    pool: str


Action = RegisterPods | DrainPod | RemovePod | RestartPod | DeletePool


@dataclass(frozen=True)
class Refusal:
    reason: str
    message: str


@dataclass(frozen=True)
class Plan:
    replicas: dict[str, int]  # StatefulSet replicas to render, every pool incl. retiring
    actions: tuple[Action, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    waiting: tuple[str, ...] = ()  # what blocks progress, for the status message
    draining: tuple[str, ...] = ()
    upgrading: bool = False


def pod_name(store: str, pool: str, ordinal: int) -> str:
    return f"{store}-{pool}-{ordinal}"


# (store, pool, ordinal) -> pod name; the local platform names its pods its own way.
Naming = Callable[[str, str, int], str]


def plan(store: str, spec: ObjectStoreSpec, observed: Observed,
         *, name: Naming = pod_name) -> Plan:
    """What to do now to bring the cluster towards `spec`."""
    if spec.paused:
        replicas = dict(observed.replicas) or {p.name: p.pods for p in spec.pools}
        return Plan(replicas=replicas, waiting=("paused",))
    registered = {r.pod_id: r for r in observed.store.registered}
    pods = {p.name: p for p in observed.pods}
    replicas, actions, refusals, waiting, draining = _scale_in(
        store, spec, observed, registered, name)
    if not observed.store.reachable:
        # Nothing can be registered or drained; StatefulSets still converge.
        return Plan(replicas=replicas, refusals=refusals, waiting=("store admin API",))
    register = _registrations(store, spec, pods, registered, waiting, name)
    if register:
        actions.insert(0, RegisterPods(tuple(register)))
    upgrading = any(p.image != spec.image for p in observed.pods if p.pool in replicas)
    if upgrading and not actions:
        restart = _next_restart(store, spec, observed, registered, waiting)
        if restart is not None:
            actions.append(restart)
    return Plan(replicas=replicas, actions=tuple(actions), refusals=tuple(refusals),
                waiting=tuple(waiting), draining=tuple(draining), upgrading=upgrading)


def _scale_in(
    store: str, spec: ObjectStoreSpec, observed: Observed, registered: dict[str, RegisteredPod],
    name_of: Naming,
) -> tuple[dict[str, int], list[Action], list[Refusal], list[str], list[str]]:
    """StatefulSet sizes, with drains and removals for pods being taken away."""
    width = spec.erasure.width
    wanted = {p.name: p.pods for p in spec.pools}
    for pool in observed.replicas:
        wanted.setdefault(pool, 0)  # a pool gone from the spec retires
    replicas: dict[str, int] = {}
    actions: list[Action] = []
    refusals: list[Refusal] = []
    waiting: list[str] = []
    draining: list[str] = []
    total = sum(wanted.values())
    shrinking = any(observed.replicas.get(p, 0) > n for p, n in wanted.items())
    if shrinking and total < width:
        refusals.append(Refusal(
            "ScaleInRefused",
            f"{total} pods would be fewer than dataBlocks + parityBlocks = {width}; "
            "keeping the current pods"))
    for pool, desired in wanted.items():
        now = observed.replicas.get(pool)
        if now is None or desired >= now:
            replicas[pool] = desired
            continue
        if refusals or not observed.store.reachable:
            replicas[pool] = now
            continue
        keep = desired
        for ordinal in range(desired, now):
            name = name_of(store, pool, ordinal)
            reg = registered.get(name)
            if reg is None:
                continue  # never registered, or removed already
            keep = max(keep, ordinal + 1)
            draining.append(name)
            if reg.state == "active":
                actions.append(DrainPod(name))
            elif reg.empty:
                actions.append(RemovePod(name))
            else:
                waiting.append(f"{name} draining")
        replicas[pool] = keep
        if keep == 0 and pool not in {p.name for p in spec.pools}:
            actions.append(DeletePool(pool))
    return replicas, actions, refusals, waiting, draining


def _registrations(
    store: str, spec: ObjectStoreSpec, pods: dict[str, ObservedPod],
    registered: dict[str, RegisteredPod], waiting: list[str], name_of: Naming,
) -> list[PodRegistration]:
    """New ready pods (all of them at once), and pods whose address changed."""
    first = not registered
    new: list[PodRegistration] = []
    moved: list[PodRegistration] = []
    not_ready: list[str] = []
    for pool in spec.pools:
        for ordinal in range(pool.pods):
            name = name_of(store, pool.name, ordinal)
            pod = pods.get(name)
            reg = registered.get(name)
            ready = pod is not None and pod.ready and pod.url is not None and not pod.deleting
            if reg is not None:
                if ready and reg.state == "active" and reg.url != pod.url:
                    moved.append(_registration(pool, pod))
                continue
            if ready:
                new.append(_registration(pool, pod))
            else:
                not_ready.append(name)
    if not_ready and new:
        waiting.append(f"pods not ready: {', '.join(sorted(not_ready)[:5])}")
        new = []  # one registration for the whole change: the data moves once
    if first and new and len(new) < spec.erasure.width:
        waiting.append(f"{len(new)} pods are fewer than {spec.erasure.width}")
        new = []
    return new + moved


def _registration(pool: Pool, pod: ObservedPod) -> PodRegistration:
    assert pod.url is not None
    return PodRegistration(pod.name, pod.url, zone=pool.zone, node="")


def _next_restart(
    store: str, spec: ObjectStoreSpec, observed: Observed,
    registered: dict[str, RegisteredPod], waiting: list[str],
) -> RestartPod | None:
    """The next outdated pod to restart, only while the store is green."""
    if any(p.deleting or not p.ready for p in observed.pods):
        waiting.append("upgrade: a pod is restarting")
        return None
    view = observed.store
    if view.health.status != "green":
        waiting.append(f"upgrade: store health is {view.health.status}")
        return None
    if not view.rebalance.done or view.rebalance.partitions_left:
        waiting.append("upgrade: rebalance under way")
        return None
    outdated = [p for p in observed.pods if p.image != spec.image and p.name in registered]
    if not outdated:
        return None
    # Highest ordinal first, as a StatefulSet's own rolling update goes.
    target = max(outdated, key=lambda p: (p.pool, p.ordinal))
    return RestartPod(target.name)
