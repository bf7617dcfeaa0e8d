"""The admin API's pod set and rebalance routes, under /_kura/admin/v1:

    GET    /pods              registered pods, their share of the current map, empty or not
    POST   /pods              {"pods": [{id, url, zone, node, weight}]} registers pods, or
                              {"count": N} starts N pods on the local platform (kurastore
                              server only); either publishes a new epoch
    POST   /pods/{id}/drain   weight 0: a new epoch in which the pod holds nothing
    DELETE /pods/{id}         removes a drained pod (refused while it may hold shards)
    GET    /rebalance         the rebalancer's progress: partitions and bytes left, rate, ETA

Rules: every pod set change goes through gateway/admin/cluster.py (publish_pods) and
refreshes this gateway's topology at once, so its new writes use the new epoch; the
rebalancer (maintenance lease holder) moves the data afterwards.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

from aiohttp import web

from kurastore.gateway.admin import cluster
from kurastore.gateway.admin.handlers import PREFIX, AdminError, _authenticate, _json, _tag
from kurastore.gateway.keys import LOCAL_PLATFORM, MAINTENANCE, SERVICE
from kurastore.metadata import PodRecord

MAX_NEW_PODS = 16
POD_TIMEOUT_S = 5.0


def _waiting_copies(request: web.Request) -> Any:
    if MAINTENANCE in request.app:
        return request.app[MAINTENANCE].rebalancer.holds_old_copies
    return lambda _pod_id: False


def _shard_count(request: web.Request) -> cluster.ShardCount:
    pods = request.app[SERVICE].pods

    async def count(url: str) -> int | None:
        try:
            async with asyncio.timeout(POD_TIMEOUT_S):
                return int((await pods.usage(url)).shards)
        except Exception:  # down or unreachable: unknown, never "empty"
            return None

    return count


def _pod_record(doc: Any) -> PodRecord:
    if not isinstance(doc, dict):
        raise AdminError(400, "BadRequest", "each pod must be a JSON object")
    pod_id, url = doc.get("id"), doc.get("url")
    if not isinstance(pod_id, str) or not 1 <= len(pod_id) <= 64 or not pod_id.isprintable():
        raise AdminError(400, "BadRequest", "pod id must be 1-64 printable characters")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise AdminError(400, "BadRequest", f"pod {pod_id}: url must be http(s)://host:port")
    weight = doc.get("weight", 1.0)
    if not isinstance(weight, int | float) or not math.isfinite(weight) or weight <= 0:
        raise AdminError(400, "BadRequest", f"pod {pod_id}: weight must be a positive number")
    zone, node = doc.get("zone", ""), doc.get("node", "")
    if not isinstance(zone, str) or not isinstance(node, str):
        raise AdminError(400, "BadRequest", f"pod {pod_id}: zone and node must be strings")
    return PodRecord(pod_id, url.rstrip("/"), zone, node, float(weight))


async def _changed(request: web.Request, change: Any) -> dict[str, Any]:
    """Runs one pod set change; answers with the epoch it published."""
    service = request.app[SERVICE]
    try:
        pmap = await change
    except cluster.PodRefused as exc:
        code = "NotFound" if exc.status == 404 else "Conflict"
        raise AdminError(exc.status, code, str(exc)) from exc
    await service.topology.refresh()
    return {"epoch": pmap.epoch, "pods": len(pmap.pods)}


async def list_pods(request: web.Request) -> web.Response:
    await _authenticate(request)
    service = request.app[SERVICE]
    await service.topology.ensure_fresh()
    if not service.topology.has_map:  # a fresh store: nothing registered yet
        return web.json_response({"epoch": None, "pods": []})
    current = service.topology.current
    views = await cluster.pod_views(service.store, current, _waiting_copies(request),
                                    _shard_count(request))
    return web.json_response({"epoch": current.epoch, "pods": views})


async def add_pods(request: web.Request) -> web.Response:
    body = _json(await _authenticate(request))
    service = request.app[SERVICE]
    if "count" in body:
        count = body["count"]
        if not isinstance(count, int) or not 1 <= count <= MAX_NEW_PODS:
            raise AdminError(400, "BadRequest", f"count must be 1-{MAX_NEW_PODS}")
        platform = request.app.get(LOCAL_PLATFORM)
        if platform is None:
            raise AdminError(409, "Conflict", "this gateway starts no pods: give their URLs "
                             "(or scale through the operator)")
        records = await platform.add_pods(count)
    else:
        docs = body.get("pods", [body] if "id" in body else None)
        if not isinstance(docs, list) or not 1 <= len(docs) <= MAX_NEW_PODS:
            raise AdminError(400, "BadRequest", "give pods: [{id, url, ...}] or count")
        records = [_pod_record(doc) for doc in docs]
    out = await _changed(request, cluster.publish_pods(service.store, records,
                                                       service.config.width))
    out["added"] = [{"id": r.pod_id, "url": r.url} for r in records]
    return web.json_response(out, status=201)


async def drain_pod(request: web.Request) -> web.Response:
    await _authenticate(request)
    service = request.app[SERVICE]
    pod_id = request.match_info["pod_id"]
    out = await _changed(request, cluster.drain_pod(service.store, pod_id,
                                                    service.config.width))
    return web.json_response(out | {"draining": pod_id})


async def remove_pod(request: web.Request) -> web.Response:
    await _authenticate(request)
    service = request.app[SERVICE]
    pod_id = request.match_info["pod_id"]
    out = await _changed(request, cluster.remove_pod(
        service.store, pod_id, service.config.width, _waiting_copies(request),
        _shard_count(request)))
    platform = request.app.get(LOCAL_PLATFORM)
    if platform is not None:
        await platform.remove_pod(pod_id)  # the local process and its volume go too
    return web.json_response(out | {"removed": pod_id})


async def rebalance(request: web.Request) -> web.Response:
    await _authenticate(request)
    if MAINTENANCE not in request.app:
        raise AdminError(503, "ServiceUnavailable", "maintenance workers are not running")
    return web.json_response(await request.app[MAINTENANCE].rebalance_progress())


def add_pod_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/pods", _tag("AdminListPods", list_pods))
    r.add_post(f"{PREFIX}/pods", _tag("AdminAddPods", add_pods))
    r.add_post(f"{PREFIX}/pods/{{pod_id}}/drain", _tag("AdminDrainPod", drain_pod))
    r.add_delete(f"{PREFIX}/pods/{{pod_id}}", _tag("AdminRemovePod", remove_pod))
    r.add_get(f"{PREFIX}/rebalance", _tag("AdminRebalance", rebalance))
