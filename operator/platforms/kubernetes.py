"""The Kubernetes platform: observes one ObjectStore (its StatefulSets, Pods and the
store's admin API), asks the reconciler for a plan, and carries it out with lightkube:
server-side apply of the rendered objects under one field manager, admin API calls for
the pod set, pod deletes for upgrades, and a status subresource patch.

Rules: every step is idempotent and re-derived from what the cluster and the store say,
so a restart mid-operation resumes; secrets are generated once and then read back, never
re-rolled; a finalizer keeps the ObjectStore until its cleanup ran, and the data volumes
are deleted only under reclaimPolicy Delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets as random
import string
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lightkube import AsyncClient, codecs
from lightkube.core.exceptions import ApiError
from lightkube.generic_resource import create_namespaced_resource
from lightkube.models.core_v1 import EventSource, ObjectReference
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import StatefulSet
from lightkube.resources.core_v1 import Event, PersistentVolumeClaim, Pod, Secret, Service
from lightkube.resources.policy_v1 import PodDisruptionBudget
from lightkube.types import PatchType

from kurastore.gateway.admin.client import AdminAPIError, AdminClient
from kurastore.operator import manifests, reconciler, status
from kurastore.operator.spec import GROUP, POD_PORT, VERSION, ObjectStoreSpec, SpecError, parse_spec

log = logging.getLogger("kurastore.operator.kubernetes")

ObjectStore = create_namespaced_resource(GROUP, VERSION, "ObjectStore", "objectstores")
ObjectStoreUser = create_namespaced_resource(GROUP, VERSION, "ObjectStoreUser",
                                             "objectstoreusers")
FINALIZER = "kurastore.io/finalizer"
FIELD_MANAGER = "kurastore-operator"
FAST_REQUEUE_S = 2.0
MAX_REGISTER = 16  # the admin API's limit per call


@dataclass(frozen=True)
class PlatformOptions:
    pod_address: str | None = None  # overrides the spec's podAddress (dns | ip)
    resync_s: float = 30.0
    admin_timeout_s: float = 10.0


_UPPER = string.ascii_uppercase + string.digits
_LETTERS = string.ascii_letters + string.digits


def _random_text(alphabet: str, length: int) -> str:
    return "".join(random.choice(alphabet) for _ in range(length))


def decode_b64(value: str) -> str:
    import base64

    return base64.b64decode(value).decode()


def _ready(pod: Pod) -> bool:
    conds = (pod.status.conditions if pod.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conds)


class KubernetesPlatform:
    def __init__(self, client: AsyncClient, options: PlatformOptions | None = None) -> None:
        self.client = client
        self.options = options or PlatformOptions()

    # --- secrets and addresses -------------------------------------------------------
    async def secret_values(self, ref: manifests.StoreRef) -> manifests.Secrets:
        """The store's secrets: read back when they exist, generated once otherwise."""
        found: dict[str, str] = {}
        for name in (manifests.cluster_secret_name(ref.name),
                     manifests.admin_secret_name(ref.name)):
            with contextlib.suppress(ApiError):
                sec = await self.client.get(Secret, name, namespace=ref.namespace)
                found.update({k: decode_b64(v) for k, v in (sec.data or {}).items()})
        return manifests.Secrets(
            cluster_secret=found.get("secret") or random.token_hex(32),
            metadata_key=found.get("metadata-key") or random.token_hex(32),
            access_key=found.get("access-key") or "KS" + _random_text(_UPPER, 18),
            secret_key=found.get("secret-key") or _random_text(_LETTERS, 40),
        )

    def _mode(self, spec: ObjectStoreSpec) -> str:
        return self.options.pod_address or spec.pod_address

    def pod_url(self, spec: ObjectStoreSpec, ref: manifests.StoreRef, pod: Pod,
                pool: str) -> str | None:
        if self._mode(spec) == "ip":
            ip = pod.status.podIP if pod.status else None
            return f"http://{ip}:{POD_PORT}" if ip else None
        service = manifests.pool_name(ref.name, pool)
        return f"http://{pod.metadata.name}.{service}.{ref.namespace}.svc:{POD_PORT}"

    async def admin_endpoint(self, spec: ObjectStoreSpec, ref: manifests.StoreRef) -> str | None:
        """Where the operator reaches the admin API: a running gateway pod's IP, or the
        internal Service (published before ready: the gateway is ready only once pods are
        registered, which is the operator's job)."""
        port = spec.gateway.port
        if self._mode(spec) == "dns":
            name = manifests.internal_service_name(ref.name)
            return f"http://{name}.{ref.namespace}.svc:{port}"
        pods = [p async for p in self.client.list(
            Pod, namespace=ref.namespace, labels=manifests.selector(ref.name, "gateway"))]
        ips = sorted((not _ready(p), p.status.podIP) for p in pods
                     if p.status and p.status.podIP and p.status.phase == "Running"
                     and not p.metadata.deletionTimestamp)
        return f"http://{ips[0][1]}:{port}" if ips else None

    # --- observation ---------------------------------------------------------------
    async def observe(self, spec: ObjectStoreSpec, ref: manifests.StoreRef,
                      admin: AdminClient | None) -> reconciler.Observed:
        replicas: dict[str, int] = {}
        async for sts in self.client.list(StatefulSet, namespace=ref.namespace, labels=
                                          manifests.selector(ref.name, "pod")):
            pool = (sts.metadata.labels or {}).get("kurastore.io/pool")
            if pool:
                replicas[pool] = sts.spec.replicas or 0
        pods = []
        async for pod in self.client.list(Pod, namespace=ref.namespace,
                                          labels=manifests.selector(ref.name, "pod")):
            pool = (pod.metadata.labels or {}).get("kurastore.io/pool", "")
            ordinal = pod.metadata.name.rsplit("-", 1)[-1]
            pods.append(reconciler.ObservedPod(
                name=pod.metadata.name, pool=pool,
                ordinal=int(ordinal) if ordinal.isdigit() else 0, ready=_ready(pod),
                url=self.pod_url(spec, ref, pod, pool),
                image=pod.spec.containers[0].image if pod.spec else "",
                deleting=pod.metadata.deletionTimestamp is not None))
        view = await self.observe_store(spec, admin)
        return reconciler.Observed(pods=tuple(sorted(pods, key=lambda p: p.name)),
                                   replicas=replicas, store=view)

    async def observe_store(self, spec: ObjectStoreSpec,
                            admin: AdminClient | None) -> reconciler.StoreView:
        if admin is None:
            return reconciler.StoreView()
        try:
            pods, cluster = await asyncio.gather(admin.list_pods(), admin.status())
            maintenance = rebalance = None
            with contextlib.suppress(AdminAPIError):
                maintenance, rebalance = await asyncio.gather(admin.maintenance(),
                                                              admin.rebalance())
        except Exception as exc:  # refused, unreachable, aiohttp errors, odd answers
            log.info("admin API not answering: %r", exc)
            return reconciler.StoreView()
        return status.store_view(pods, cluster, maintenance, rebalance,
                                 spec.erasure.parity_blocks)

    # --- execution ---------------------------------------------------------------
    async def apply(self, objects: list[dict[str, Any]]) -> None:
        for doc in objects:
            obj = codecs.from_dict(doc)
            await self.client.apply(obj, field_manager=FIELD_MANAGER, force=True)

    async def execute(self, ref: manifests.StoreRef, admin: AdminClient | None,
                      actions: tuple[reconciler.Action, ...]) -> None:
        for action in actions:
            log.info("%s/%s: %s", ref.namespace, ref.name, action)
            if isinstance(action, reconciler.RestartPod):
                with contextlib.suppress(ApiError):
                    await self.client.delete(Pod, action.name, namespace=ref.namespace)
                continue
            if isinstance(action, reconciler.DeletePool):
                await self._delete_pool(ref, action.pool)
                continue
            if admin is None:
                continue
            try:
                await self._admin_action(admin, action)
            except AdminAPIError as exc:
                log.warning("%s/%s: %s refused: %s", ref.namespace, ref.name, action, exc)

    async def _admin_action(self, admin: AdminClient, action: reconciler.Action) -> None:
        if isinstance(action, reconciler.RegisterPods):
            docs = [{"id": p.pod_id, "url": p.url, "zone": p.zone, "node": p.node}
                    for p in action.pods]
            for i in range(0, len(docs), MAX_REGISTER):
                await admin.add_pods(pods=docs[i:i + MAX_REGISTER])
        elif isinstance(action, reconciler.DrainPod):
            await admin.drain_pod(action.pod_id)
        elif isinstance(action, reconciler.RemovePod):
            await admin.remove_pod(action.pod_id)

    async def _delete_pool(self, ref: manifests.StoreRef, pool: str) -> None:
        name = manifests.pool_name(ref.name, pool)
        for kind in (StatefulSet, Service, PodDisruptionBudget):
            with contextlib.suppress(ApiError):
                await self.client.delete(kind, name, namespace=ref.namespace)

    async def scale_retiring(self, ref: manifests.StoreRef, spec: ObjectStoreSpec,
                             replicas: dict[str, int]) -> None:
        """Pools gone from the spec keep their StatefulSet, shrinking as pods drain."""
        for pool, count in replicas.items():
            if pool in {p.name for p in spec.pools}:
                continue
            with contextlib.suppress(ApiError):
                await self.client.patch(
                    StatefulSet, manifests.pool_name(ref.name, pool),
                    {"spec": {"replicas": count}}, namespace=ref.namespace,
                    patch_type=PatchType.MERGE)

    async def event(self, involved: Any, kind: str, reason: str, message: str,
                    event_type: str = "Warning") -> None:
        meta = involved.metadata
        now = datetime.now(UTC)
        ev = Event(
            metadata=ObjectMeta(generateName=f"{meta.name}.", namespace=meta.namespace),
            involvedObject=ObjectReference(apiVersion=f"{GROUP}/{VERSION}", kind=kind,
                                           name=meta.name, namespace=meta.namespace,
                                           uid=meta.uid),
            reason=reason, message=message[:1024], type=event_type,
            source=EventSource(component=FIELD_MANAGER), firstTimestamp=now,
            lastTimestamp=now, count=1)
        with contextlib.suppress(ApiError):
            await self.client.create(ev)

    # --- one reconcile -----------------------------------------------------------------
    async def reconcile_store(self, namespace: str, name: str) -> float | None:
        """One pass over one ObjectStore; returns seconds until the next pass."""
        try:
            obj = await self.client.get(ObjectStore, name, namespace=namespace)
        except ApiError as exc:
            if exc.status.code == 404:
                return None
            raise
        meta = obj.metadata
        ref = manifests.StoreRef(name, namespace, meta.uid)
        if meta.deletionTimestamp is not None:
            await self._finalize(obj, ref)
            return None
        if FINALIZER not in (meta.finalizers or []):
            await self.client.patch(ObjectStore, name, {"metadata": {
                "finalizers": [*(meta.finalizers or []), FINALIZER],
                "resourceVersion": meta.resourceVersion}},
                namespace=namespace, patch_type=PatchType.MERGE)
        old_status = obj.get("status") or {}
        try:
            spec = parse_spec(obj.get("spec") or {})
        except SpecError as exc:
            await self._patch_status(ref, {"observedGeneration": meta.generation,
                                           "phase": "Failed", "message": str(exc)})
            return None
        values = await self.secret_values(ref)
        if not spec.paused:
            await self.apply(manifests.secrets(ref, values))
        endpoint = await self.admin_endpoint(spec, ref)
        admin = (AdminClient(endpoint, values.access_key, values.secret_key,
                             timeout_s=self.options.admin_timeout_s) if endpoint else None)
        try:
            return await self._converge(obj, ref, spec, values, admin, old_status)
        finally:
            if admin is not None:
                await admin.close()

    async def _converge(self, obj: Any, ref: manifests.StoreRef, spec: ObjectStoreSpec,
                        values: manifests.Secrets, admin: AdminClient | None,
                        old_status: dict[str, Any]) -> float:
        observed = await self.observe(spec, ref, admin)
        the_plan = reconciler.plan(ref.name, spec, observed)
        if not spec.paused:
            await self.apply(manifests.workloads(ref, spec, the_plan.replicas))
            await self.scale_retiring(ref, spec, the_plan.replicas)
            await self.execute(ref, admin, the_plan.actions)
        was_refused = any(c.get("type") == "ScaleInRefused" and c.get("status") == "True"
                          for c in old_status.get("conditions") or [])
        for refusal in the_plan.refusals:
            if not was_refused:
                await self.event(obj, "ObjectStore", refusal.reason, refusal.message)
        new_status = status.compute_status(
            spec, observed, the_plan, generation=obj.metadata.generation,
            endpoints=self.endpoints(spec, ref), old_conditions=old_status.get("conditions"))
        await self._patch_status(ref, new_status)
        busy = the_plan.actions or new_status["phase"] not in ("Ready", "Paused", "Failed")
        return FAST_REQUEUE_S if busy else self.options.resync_s

    def endpoints(self, spec: ObjectStoreSpec, ref: manifests.StoreRef) -> dict[str, str]:
        gw = manifests.gateway_name(ref.name)
        return {"s3": f"http://{gw}.{ref.namespace}.svc:{spec.gateway.port}",
                "admin": f"http://{gw}.{ref.namespace}.svc:{spec.gateway.port}/_kura/admin/v1"}

    async def _patch_status(self, ref: manifests.StoreRef, doc: dict[str, Any]) -> None:
        await self.client.patch(ObjectStore.Status, ref.name, {"status": doc},
                                namespace=ref.namespace, patch_type=PatchType.MERGE)

    async def _finalize(self, obj: Any, ref: manifests.StoreRef) -> None:
        """Owned objects go by garbage collection; data volumes only under Delete."""
        spec_doc = obj.get("spec") or {}
        if spec_doc.get("reclaimPolicy") == "Delete":
            async for pvc in self.client.list(PersistentVolumeClaim, namespace=ref.namespace,
                                              labels={"app.kubernetes.io/instance": ref.name}):
                with contextlib.suppress(ApiError):
                    await self.client.delete(PersistentVolumeClaim, pvc.metadata.name,
                                             namespace=ref.namespace)
        finalizers = [f for f in obj.metadata.finalizers or [] if f != FINALIZER]
        with contextlib.suppress(ApiError):
            await self.client.patch(ObjectStore, ref.name,
                                    {"metadata": {"finalizers": finalizers}},
                                    namespace=ref.namespace, patch_type=PatchType.MERGE)


Reconcile = Callable[[str, str], Awaitable[float | None]]
