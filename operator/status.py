"""The ObjectStore status: pure functions from the admin API's answers to the observed
view (health, rebalance, registry), and from spec + observation + plan to `.status`.

Rules: health is green only when every registered pod answers and nothing waits to be
healed; red when more pods are offline than parity blocks (some partition may be below k
healthy blocks) or no pod answers; yellow in between. The last scrub's count of objects
below k+m is shown, not judged (it is measured once per pass, so it lags every repair).
Conditions keep their lastTransitionTime while their status stays the same.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kurastore.operator.reconciler import (
    Health,
    Observed,
    Plan,
    Rebalance,
    RegisteredPod,
    RegisterPods,
    StoreView,
)
from kurastore.operator.spec import ObjectStoreSpec

CONDITION_TYPES = ("Ready", "Available", "Progressing", "Degraded", "Rebalancing",
                   "Draining", "Upgrading", "ScaleInRefused")


def health_of(status: dict[str, Any], maintenance: dict[str, Any] | None,
              parity_blocks: int) -> Health:
    """Health from GET /status (pods, heal queue) and GET /maintenance (durability)."""
    pods = status.get("pods", [])
    online = sum(1 for p in pods if p.get("ready"))
    offline = len(pods) - online
    heal_queue = int(status.get("heal_queue") or 0)
    degraded = 0
    if maintenance:
        # The last scrub pass's count of objects below k+m healthy blocks.
        width = int(maintenance.get("k") or 0) + int(maintenance.get("m") or 0)
        durability = (maintenance.get("scrub") or {}).get("durability") or {}
        by_blocks = durability.get("objects_by_healthy_blocks") or {}
        degraded = sum(int(c) for n, c in by_blocks.items() if int(n) < width)
    # The scrub's count (objects_degraded) is reported but does not set the verdict: it is
    # measured once per pass (a day apart by default), so it lags every repair.
    if not pods or offline > parity_blocks:
        verdict = "red"
    elif offline or heal_queue:
        verdict = "yellow"
    else:
        verdict = "green"
    return Health(verdict, online, offline, heal_queue, degraded)


def rebalance_of(doc: dict[str, Any] | None) -> Rebalance:
    if not doc:
        return Rebalance()
    return Rebalance(
        done=bool(doc.get("done", True)), target_epoch=doc.get("target_epoch"),
        partitions_moved=int(doc.get("partitions_moved") or 0),
        partitions_left=int(doc.get("partitions_left") or 0),
        bytes_moved=int(doc.get("bytes_moved") or 0),
        bytes_left=int(doc.get("bytes_left") or 0),
        rate_bytes_s=float(doc.get("rate_bytes_s") or 0.0), eta_s=doc.get("eta_s"),
        old_copies_waiting=int(doc.get("old_copies_waiting") or 0),
    )


def registered_of(doc: dict[str, Any]) -> tuple[RegisteredPod, ...]:
    return tuple(
        RegisteredPod(p["id"], p["url"], p.get("state", "active"), bool(p.get("empty")),
                      int(p.get("slots") or 0))
        for p in doc.get("pods", []) if p.get("state") != "removed"
    )


def store_view(pods: dict[str, Any], status: dict[str, Any],
               maintenance: dict[str, Any] | None, rebalance: dict[str, Any] | None,
               parity_blocks: int) -> StoreView:
    return StoreView(
        reachable=True, epoch=status.get("epoch"), registered=registered_of(pods),
        health=health_of(status, maintenance, parity_blocks), rebalance=rebalance_of(rebalance),
        capacity_bytes=sum(int(p.get("capacity_bytes") or 0) for p in status.get("pods", [])),
        used_bytes=sum(int(p.get("used_bytes") or 0) for p in status.get("pods", [])),
    )


def _progress(rb: Rebalance) -> str:
    total = rb.partitions_moved + rb.partitions_left
    if rb.done and not rb.partitions_left:
        return "100%"
    return f"{100 * rb.partitions_moved // total}%" if total else "0%"


def phase_of(spec: ObjectStoreSpec, observed: Observed, plan: Plan) -> str:
    view = observed.store
    if spec.paused:
        return "Paused"
    if not view.reachable:
        return "Pending"  # the gateway does not answer (starting, restarting)
    if not view.registered:
        return "Creating"
    if plan.draining:
        return "Draining"
    if view.health.status == "red":
        return "Degraded"
    known = {r.pod_id for r in view.registered}
    if (any(isinstance(a, RegisterPods) for a in plan.actions)
            or any(p.name not in known for p in observed.pods)
            or len(observed.pods) < spec.total_pods):
        return "Scaling"  # new pods being made, starting or joining
    if not view.rebalance.done or view.rebalance.partitions_left:
        return "Rebalancing"
    if plan.upgrading:
        return "Upgrading"
    if view.health.status != "green" or _ready_pods(observed) < spec.total_pods:
        return "Degraded"
    return "Ready"


def _ready_pods(observed: Observed) -> int:
    return sum(1 for p in observed.pods if p.ready)


def _cond(kind: str, ok: bool, reason: str, message: str = "") -> dict[str, Any]:
    return {"type": kind, "status": "True" if ok else "False", "reason": reason,
            "message": message}


def conditions_of(spec: ObjectStoreSpec, observed: Observed, plan: Plan,
                  phase: str) -> list[dict[str, Any]]:
    view = observed.store
    rb = view.rebalance
    health = view.health.status
    rebalancing = not rb.done or rb.partitions_left > 0
    refused = next((r for r in plan.refusals if r.reason == "ScaleInRefused"), None)
    waiting = "; ".join(plan.waiting)
    return [
        _cond("Ready", phase == "Ready", phase, waiting),
        _cond("Available", view.reachable and health in ("green", "yellow"),
              "StoreServing" if view.reachable else "StoreUnreachable"),
        _cond("Progressing", phase in ("Creating", "Scaling", "Rebalancing", "Draining",
                                       "Upgrading"), phase, waiting),
        _cond("Degraded", health in ("yellow", "red"), f"Health{health.capitalize()}",
              f"{view.health.pods_offline} pods offline, heal queue {view.health.heal_queue}"),
        _cond("Rebalancing", rebalancing, "PartitionsMoving" if rebalancing else "Balanced",
              f"{rb.partitions_left} partitions left" if rebalancing else ""),
        _cond("Draining", bool(plan.draining), "Draining" if plan.draining else "NotDraining",
              ", ".join(plan.draining)),
        _cond("Upgrading", plan.upgrading, "RollingPods" if plan.upgrading else "UpToDate"),
        _cond("ScaleInRefused", refused is not None,
              "TooFewPods" if refused else "NoRefusal", refused.message if refused else ""),
    ]


def merge_conditions(old: list[dict[str, Any]], new: list[dict[str, Any]],
                     generation: int, now: datetime | None = None) -> list[dict[str, Any]]:
    """New conditions keep the old lastTransitionTime where the status did not change."""
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    before = {c.get("type"): c for c in old or []}
    out = []
    for cond in new:
        prev = before.get(cond["type"])
        same = prev is not None and prev.get("status") == cond["status"]
        out.append(cond | {"observedGeneration": generation,
                           "lastTransitionTime": prev["lastTransitionTime"]
                           if same and prev.get("lastTransitionTime") else stamp})
    return out


def compute_status(
    spec: ObjectStoreSpec, observed: Observed, plan: Plan, *, generation: int,
    endpoints: dict[str, str], old_conditions: list[dict[str, Any]] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The whole `.status` of an ObjectStore."""
    view = observed.store
    phase = phase_of(spec, observed, plan)
    rb = view.rebalance
    pools = []
    for pool in sorted(plan.replicas):
        mine = [p for p in observed.pods if p.pool == pool]
        desired = next((p.pods for p in spec.pools if p.name == pool), 0)
        pools.append({"name": pool, "statefulSet": pool, "desiredPods": desired,
                      "pods": len(mine), "readyPods": sum(1 for p in mine if p.ready),
                      "draining": [d for d in plan.draining if d in {p.name for p in mine}]})
    rebalance = {
        "state": "Running" if (not rb.done or rb.partitions_left) else
                 ("Done" if rb.target_epoch is not None else "Idle"),
        "progress": _progress(rb), "partitionsMoved": rb.partitions_moved,
        "partitionsLeft": rb.partitions_left, "bytesMoved": rb.bytes_moved,
        "bytesLeft": rb.bytes_left, "rateBytesPerSecond": rb.rate_bytes_s,
    }
    if rb.eta_s is not None:
        rebalance["etaSeconds"] = float(rb.eta_s)
    status: dict[str, Any] = {
        "observedGeneration": generation, "phase": phase,
        "message": "; ".join([r.message for r in plan.refusals] + list(plan.waiting)),
        "conditions": merge_conditions(old_conditions or [],
                                       conditions_of(spec, observed, plan, phase),
                                       generation, now),
        "pods": f"{_ready_pods(observed)}/{spec.total_pods}",
        "health": {"status": view.health.status if view.reachable else "unknown",
                   "podsOnline": view.health.pods_online,
                   "podsOffline": view.health.pods_offline,
                   "objectsDegraded": view.health.objects_degraded,
                   "healQueue": view.health.heal_queue},
        "rebalance": rebalance, "pools": pools, "endpoints": endpoints, "image": spec.image,
    }
    if view.epoch is not None:
        status["placementEpoch"] = view.epoch
    if view.reachable:
        status["capacity"] = {"totalBytes": view.capacity_bytes, "usedBytes": view.used_bytes}
    return status
