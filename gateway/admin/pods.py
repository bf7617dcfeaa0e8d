"""The admin API's pod set and rebalance routes, under /_kura/admin/v1:

    GET    /pods              registered pods, their share of the current map, empty or not
    POST   /pods              {"pods": [{id, url, zone, node, weight}]} registers pods, or
                              {"count": N} adds N pods to the local spec (kurastore server
                              only); either publishes a new epoch
    POST   /pods/{id}/drain   weight 0: a new epoch in which the pod holds nothing
    DELETE /pods/{id}         removes a drained pod (refused while it may hold shards)
    GET    /rebalance         the rebalancer's progress: partitions and bytes left, rate, ETA
    GET    /spec              kurastore server only: the desired local spec and the
                              ObjectStore status its operator computed
    POST   /spec              kurastore server only: change the desired spec

Rules: every pod set change goes through gateway/admin/cluster.py (publish_pods) and
refreshes this gateway's topology at once, so its new writes use the new epoch; the
rebalancer (maintenance lease holder) moves the data afterwards. PodAdmin runs the same
operations in-process for the local operator, with the same names as AdminClient's, so
the operator drives either through one interface. Under `kurastore server` a pod count
or a drain of one of its pods changes the local spec and waits for the local operator
to carry it out; the answers stay what they were.
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


class PodAdmin:
    """The pod set operations on one gateway's object service and maintenance workers.
    Refusals raise cluster.PodRefused."""

    def __init__(self, service: Any, workers: Any | None) -> None:
        self.service = service
        self.workers = workers  # the maintenance workers (None: not running here)

    def _waiting_copies(self) -> Any:
        if self.workers is not None:
            return self.workers.rebalancer.holds_old_copies
        return lambda _pod_id: False

    async def _shard_count(self, url: str) -> int | None:
        try:
            async with asyncio.timeout(POD_TIMEOUT_S):
                return int((await self.service.pods.usage(url)).shards)
        except Exception:  # down or unreachable: unknown, never "empty"
            return None

    async def _changed(self, pmap: Any) -> dict[str, Any]:
        await self.service.topology.refresh()
        return {"epoch": pmap.epoch, "pods": len(pmap.pods)}

    async def status(self) -> dict[str, Any]:
        return await self.service.cluster_status()

    async def scrub_now(self) -> bool:
        """Asks the scrubber for a pass now; False where maintenance does not run here."""
        if self.workers is None:
            return False
        self.workers.scrubber.request_pass()
        return True

    async def maintenance(self) -> dict[str, Any] | None:
        return await self.workers.progress() if self.workers is not None else None

    async def rebalance(self) -> dict[str, Any] | None:
        if self.workers is None:
            return None
        return await self.workers.rebalance_progress()

    async def list_pods(self) -> dict[str, Any]:
        service = self.service
        await service.topology.ensure_fresh()
        if not service.topology.has_map:  # a fresh store: nothing registered yet
            return {"epoch": None, "pods": []}
        current = service.topology.current
        views = await cluster.pod_views(service.store, current, self._waiting_copies(),
                                        self._shard_count, service.topology.get_map)
        return {"epoch": current.epoch, "pods": views}

    async def add_pods(self, *, pods: list[dict[str, Any]]) -> dict[str, Any]:
        records = [_pod_record(doc) for doc in pods]
        pmap = await cluster.publish_pods(self.service.store, records,
                                          self.service.config.width)
        return await self._changed(pmap) | {
            "added": [{"id": r.pod_id, "url": r.url} for r in records]}

    async def drain_pod(self, pod_id: str) -> dict[str, Any]:
        pmap = await cluster.drain_pod(self.service.store, pod_id, self.service.config.width)
        return await self._changed(pmap) | {"draining": pod_id}

    async def check_drain(self, pod_id: str) -> None:
        await cluster.check_drain(self.service.store, pod_id, self.service.config.width)

    async def remove_pod(self, pod_id: str) -> dict[str, Any]:
        pmap = await cluster.remove_pod(self.service.store, pod_id, self.service.config.width,
                                        self._waiting_copies(), self._shard_count,
                                        self.service.topology.get_map)
        return await self._changed(pmap) | {"removed": pod_id}

    async def current(self) -> dict[str, Any]:
        """The epoch and pod count of the current map (after a change made elsewhere)."""
        await self.service.topology.refresh()
        pmap = self.service.topology.current
        return {"epoch": pmap.epoch, "pods": len(pmap.pods)}


def _pod_admin(request: web.Request) -> PodAdmin:
    return PodAdmin(request.app[SERVICE], request.app.get(MAINTENANCE))


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


async def _refusals(change: Any) -> Any:
    """Runs one pod set change; a refusal becomes its admin API error."""
    try:
        return await change
    except cluster.PodRefused as exc:
        code = "NotFound" if exc.status == 404 else "Conflict"
        raise AdminError(exc.status, code, str(exc)) from exc
    except cluster.SpecRefused as exc:
        raise AdminError(409, "Conflict", str(exc)) from exc


async def list_pods(request: web.Request) -> web.Response:
    await _authenticate(request)
    return web.json_response(await _pod_admin(request).list_pods())


async def add_pods(request: web.Request) -> web.Response:
    body = _json(await _authenticate(request))
    admin = _pod_admin(request)
    if "count" not in body:
        docs = body.get("pods", [body] if "id" in body else None)
        if not isinstance(docs, list) or not 1 <= len(docs) <= MAX_NEW_PODS:
            raise AdminError(400, "BadRequest", "give pods: [{id, url, ...}] or count")
        return web.json_response(await _refusals(admin.add_pods(pods=docs)), status=201)
    count = body["count"]
    if not isinstance(count, int) or not 1 <= count <= MAX_NEW_PODS:
        raise AdminError(400, "BadRequest", f"count must be 1-{MAX_NEW_PODS}")
    platform = request.app.get(LOCAL_PLATFORM)
    if platform is None:
        raise AdminError(409, "Conflict", "this gateway starts no pods: give their URLs "
                         "(or scale through the operator)")
    # The local operator starts them, and registers them (one new epoch).
    records = await _refusals(platform.add_pods(count))
    out = await admin.current()
    out["added"] = [{"id": r.pod_id, "url": r.url} for r in records]
    return web.json_response(out, status=201)


async def drain_pod(request: web.Request) -> web.Response:
    await _authenticate(request)
    admin = _pod_admin(request)
    pod_id = request.match_info["pod_id"]
    platform = request.app.get(LOCAL_PLATFORM)
    if platform is not None:
        await _refusals(admin.check_drain(pod_id))  # 404 and 409 as without the operator
        if await _refusals(platform.drain_pod(pod_id)):
            return web.json_response(await admin.current() | {"draining": pod_id})
    return web.json_response(await _refusals(admin.drain_pod(pod_id)))


async def remove_pod(request: web.Request) -> web.Response:
    await _authenticate(request)
    admin = _pod_admin(request)
    pod_id = request.match_info["pod_id"]
    platform = request.app.get(LOCAL_PLATFORM)
    if platform is not None and await cluster.was_removed(admin.service.store, pod_id):
        # The local operator removes a drained pod once it is empty: done already.
        return web.json_response(await admin.current() | {"removed": pod_id})
    out = await _refusals(admin.remove_pod(pod_id))
    if platform is not None:
        await platform.remove_pod(pod_id)  # the local process goes too
    return web.json_response(out)


async def rebalance(request: web.Request) -> web.Response:
    await _authenticate(request)
    progress = await _pod_admin(request).rebalance()
    if progress is None:
        raise AdminError(503, "ServiceUnavailable", "maintenance workers are not running")
    return web.json_response(progress)


async def scrub_now(request: web.Request) -> web.Response:
    """Start a scrub pass now (after the running one): on the gateway running the
    maintenance workers; 503 on another."""
    await _authenticate(request)
    if not await _pod_admin(request).scrub_now():
        raise AdminError(503, "ServiceUnavailable", "maintenance workers are not running here")
    return web.json_response({"scrub": "requested"}, status=202)


def _platform(request: web.Request) -> Any:
    platform = request.app.get(LOCAL_PLATFORM)
    if platform is None:
        raise AdminError(404, "NotFound", "no local spec: this gateway runs under the "
                         "Kubernetes operator or none (see the ObjectStore resource)")
    return platform


async def get_spec(request: web.Request) -> web.Response:
    await _authenticate(request)
    return web.json_response(await _platform(request).spec())


async def set_spec(request: web.Request) -> web.Response:
    body = _json(await _authenticate(request))
    platform = _platform(request)
    return web.json_response(await _refusals(platform.set_spec(body)))


def add_pod_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(f"{PREFIX}/pods", _tag("AdminListPods", list_pods))
    r.add_post(f"{PREFIX}/pods", _tag("AdminAddPods", add_pods))
    r.add_post(f"{PREFIX}/pods/{{pod_id}}/drain", _tag("AdminDrainPod", drain_pod))
    r.add_delete(f"{PREFIX}/pods/{{pod_id}}", _tag("AdminRemovePod", remove_pod))
    r.add_get(f"{PREFIX}/rebalance", _tag("AdminRebalance", rebalance))
    r.add_post(f"{PREFIX}/maintenance/scrub", _tag("AdminScrubNow", scrub_now))
    r.add_get(f"{PREFIX}/spec", _tag("AdminGetSpec", get_spec))
    r.add_post(f"{PREFIX}/spec", _tag("AdminSetSpec", set_spec))
