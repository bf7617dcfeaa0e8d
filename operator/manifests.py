"""The Kubernetes objects of one ObjectStore, rendered from its spec: per pool a
StatefulSet of storage pods (volumeClaimTemplates) with a headless Service and a
PodDisruptionBudget; the gateway Deployment with its Service, a metrics Service and (for
SQLite metadata) its volume claim; the cluster and admin Secrets.

Rules: pure functions of (store identity, spec, sizes, secret values); every object
carries the app.kubernetes.io labels and an owner reference to the ObjectStore, so
deleting the store deletes them, except volumes under reclaimPolicy Retain. StatefulSets
update OnDelete: the operator restarts pods one at a time while the store is green.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kurastore.operator.spec import (
    GROUP,
    POD_PORT,
    VERSION,
    GatewayLoad,
    ObjectStoreSpec,
    Pool,
)

CLUSTER_MOUNT = "/etc/kurastore/cluster"
DATA_MOUNT = "/data"
METRICS_PORT_NAME = "metrics"
# The image runs as this user; volumes are made writable for it (fsGroup).
SECURITY = {"runAsNonRoot": True, "runAsUser": 65532, "fsGroup": 65532}


@dataclass(frozen=True)
class StoreRef:
    name: str
    namespace: str
    uid: str


@dataclass(frozen=True)
class Secrets:
    cluster_secret: str  # hex
    metadata_key: str  # hex, 32 bytes
    access_key: str
    secret_key: str


def cluster_secret_name(store: str) -> str:
    return f"{store}-cluster"


def admin_secret_name(store: str) -> str:
    return f"{store}-admin"


def pool_name(store: str, pool: str) -> str:
    return f"{store}-{pool}"


def gateway_name(store: str) -> str:
    return f"{store}-gateway"


def internal_service_name(store: str) -> str:
    return f"{store}-gateway-internal"


def labels(store: str, component: str, pool: str | None = None) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": "kurastore", "app.kubernetes.io/instance": store,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "kurastore-operator",
        "app.kubernetes.io/part-of": "kurastore",
    }
    if pool is not None:
        out["kurastore.io/pool"] = pool
    return out


def selector(store: str, component: str, pool: str | None = None) -> dict[str, str]:
    keep = ("app.kubernetes.io/instance", "app.kubernetes.io/component", "kurastore.io/pool")
    return {k: v for k, v in labels(store, component, pool).items() if k in keep}


def owner_reference(ref: StoreRef) -> dict[str, Any]:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ObjectStore", "name": ref.name,
            "uid": ref.uid, "controller": True, "blockOwnerDeletion": True}


def _meta(ref: StoreRef, name: str, component: str, pool: str | None = None,
          owned: bool = True) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ref.namespace,
                            "labels": labels(ref.name, component, pool)}
    if owned:
        meta["ownerReferences"] = [owner_reference(ref)]
    return meta


def _env_field(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _env_secret(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _probe(path: str, port: str, period_s: int = 5) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port}, "periodSeconds": period_s,
            "timeoutSeconds": 3, "failureThreshold": 3}


def secrets(ref: StoreRef, values: Secrets) -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
         "metadata": _meta(ref, cluster_secret_name(ref.name), "cluster-secret"),
         "stringData": {"secret": values.cluster_secret, "metadata-key": values.metadata_key}},
        {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
         "metadata": _meta(ref, admin_secret_name(ref.name), "admin-credentials"),
         "stringData": {"access-key": values.access_key, "secret-key": values.secret_key}},
    ]


def pod_service(ref: StoreRef, pool: Pool) -> dict[str, Any]:
    """Headless: a stable DNS name per pod, published before it is ready so the store
    can reach a pod it is bringing back."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": _meta(ref, pool_name(ref.name, pool.name), "pod", pool.name),
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                 "selector": selector(ref.name, "pod", pool.name),
                 "ports": [{"name": "pod", "port": POD_PORT, "targetPort": "pod"}]},
    }


def stateful_set(ref: StoreRef, spec: ObjectStoreSpec, pool: Pool,
                 replicas: int) -> dict[str, Any]:
    name = pool_name(ref.name, pool.name)
    claim: dict[str, Any] = {
        "metadata": {"name": "data", "labels": labels(ref.name, "pod", pool.name)},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": pool.storage_size}}},
    }
    if pool.storage_class:
        claim["spec"]["storageClassName"] = pool.storage_class
    container: dict[str, Any] = {
        "name": "pod", "image": spec.image, "command": ["kurastore"],
        "args": ["pod", "--data", DATA_MOUNT, "--listen", f"$(POD_IP):{POD_PORT}",
                 "--secret-file", f"{CLUSTER_MOUNT}/secret", "--pod-id", "$(POD_NAME)"],
        "env": [_env_field("POD_NAME", "metadata.name"), _env_field("POD_IP", "status.podIP")],
        "ports": [{"name": "pod", "containerPort": POD_PORT}],
        "readinessProbe": _probe("/readyz", "pod"),
        "livenessProbe": _probe("/healthz", "pod", 10) | {"failureThreshold": 6},
        "volumeMounts": [{"name": "data", "mountPath": DATA_MOUNT},
                         {"name": "cluster", "mountPath": CLUSTER_MOUNT, "readOnly": True}],
    }
    if pool.resources:
        container["resources"] = pool.resources
    pod_spec: dict[str, Any] = {
        "containers": [container], "securityContext": SECURITY,
        "terminationGracePeriodSeconds": 30,
        "volumes": [{"name": "cluster", "secret": {
            "secretName": cluster_secret_name(ref.name), "defaultMode": 0o400}}],
        # Spread a pool over nodes, so one node lost is one pod of each partition at most.
        "topologySpreadConstraints": [{
            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector(ref.name, "pod", pool.name)}}],
    }
    if pool.node_selector:
        pod_spec["nodeSelector"] = dict(pool.node_selector)
    if pool.tolerations:
        pod_spec["tolerations"] = list(pool.tolerations)
    retain = "Retain" if spec.reclaim_policy == "Retain" else "Delete"
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": _meta(ref, name, "pod", pool.name),
        "spec": {
            "serviceName": name, "replicas": replicas, "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "OnDelete"},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": retain,
                                                     "whenScaled": "Retain"},
            "selector": {"matchLabels": selector(ref.name, "pod", pool.name)},
            "template": {"metadata": {"labels": labels(ref.name, "pod", pool.name)},
                         "spec": pod_spec},
            "volumeClaimTemplates": [claim],
        },
    }


def disruption_budget(ref: StoreRef, spec: ObjectStoreSpec, pool: Pool) -> dict[str, Any]:
    """Voluntary disruptions (node drains, evictions) a pool may take at once. Writes need
    k+1 of a partition's k+m pods, so m-1 pods may go by choice across the whole store,
    leaving one more block for an unplanned failure; the budgets of the pools add up, so
    each gets its share. At least 1 (else no node could ever drain), 0 with m = 0."""
    m = spec.erasure.parity_blocks
    pools = max(1, len(spec.pools))
    budget = 0 if m == 0 else max(1, (m - 1) // pools)
    return {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": _meta(ref, pool_name(ref.name, pool.name), "pod", pool.name),
        "spec": {"maxUnavailable": budget,
                 "selector": {"matchLabels": selector(ref.name, "pod", pool.name)}},
    }


def _load_args(load: GatewayLoad) -> list[str]:
    return ["--max-in-flight", str(load.max_requests_in_flight),
            "--max-queued", str(load.max_requests_queued),
            "--queue-wait", f"{load.queue_wait_s:g}",
            "--idle-timeout", f"{load.idle_timeout_s:g}",
            "--client-timeout", f"{load.client_timeout_s:g}",
            "--min-body-rate", str(load.min_body_bytes_s),
            "--read-buffer", str(load.read_buffer_bytes),
            "--write-buffer", str(load.write_buffer_bytes)]


def _gateway_container(ref: StoreRef, spec: ObjectStoreSpec) -> dict[str, Any]:
    admin = admin_secret_name(ref.name)
    cluster = cluster_secret_name(ref.name)
    args = ["gateway", "--listen", f"$(POD_IP):{spec.gateway.port}",
            "--erasure", f"{spec.erasure.data_blocks}+{spec.erasure.parity_blocks}",
            "--rebalance-rate", str(spec.rebalance.rate_bytes_s),
            "--rebalance-grace", str(spec.rebalance.grace_s),
            "--rebalance-concurrency", str(spec.rebalance.concurrency),
            *_load_args(spec.gateway.load)]
    env = [_env_field("POD_IP", "status.podIP"),
           _env_secret("KURASTORE_CLUSTER_SECRET", cluster, "secret"),
           _env_secret("KURASTORE_METADATA_KEY", cluster, "metadata-key"),
           _env_secret("KURASTORE_ACCESS_KEY", admin, "access-key"),
           _env_secret("KURASTORE_SECRET_KEY", admin, "secret-key")]
    mounts = []
    if spec.metadata.kind == "sqlite":
        args += ["--sqlite", f"{DATA_MOUNT}/metadata.db"]
        mounts.append({"name": "metadata", "mountPath": DATA_MOUNT})
    else:
        env.append(_env_secret("KURASTORE_METADATA_DSN", spec.metadata.dsn_secret_name or "",
                               spec.metadata.dsn_secret_key))
    container: dict[str, Any] = {
        "name": "gateway", "image": spec.image, "command": ["kurastore"], "args": args,
        "env": env, "ports": [{"name": "s3", "containerPort": spec.gateway.port}],
        "readinessProbe": _probe("/_kura/readyz", "s3"),
        "livenessProbe": _probe("/_kura/healthz", "s3", 10) | {"failureThreshold": 6},
        "volumeMounts": mounts,
    }
    if spec.gateway.resources:
        container["resources"] = spec.gateway.resources
    return container


def gateway(ref: StoreRef, spec: ObjectStoreSpec) -> list[dict[str, Any]]:
    """The gateway Deployment and its Services (plus its SQLite volume claim)."""
    name = gateway_name(ref.name)
    volumes = []
    out: list[dict[str, Any]] = []
    if spec.metadata.kind == "sqlite":
        claim = f"{name}-metadata"
        volumes.append({"name": "metadata", "persistentVolumeClaim": {"claimName": claim}})
        pvc_spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {
            "requests": {"storage": spec.metadata.storage_size}}}
        if spec.metadata.storage_class:
            pvc_spec["storageClassName"] = spec.metadata.storage_class
        out.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": _meta(ref, claim, "metadata",
                                      owned=spec.reclaim_policy == "Delete"),
                    "spec": pvc_spec})
        # One SQLite writer, on a ReadWriteOnce volume: the old gateway stops first.
        strategy: dict[str, Any] = {"type": "Recreate"}
    else:
        # Many gateways: one more comes up before one goes, so the endpoint never goes away.
        strategy = {"type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    out.append({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta(ref, name, "gateway"),
        "spec": {
            "replicas": spec.gateway_replicas, "strategy": strategy,
            "selector": {"matchLabels": selector(ref.name, "gateway")},
            "template": {"metadata": {"labels": labels(ref.name, "gateway")},
                         "spec": {"containers": [_gateway_container(ref, spec)],
                                  "securityContext": SECURITY,
                                  "volumes": volumes, "terminationGracePeriodSeconds": 30}},
        },
    })
    out.append({
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(ref, name, "gateway"),
        "spec": {"type": spec.gateway.service_type,
                 "selector": selector(ref.name, "gateway"),
                 "ports": [{"name": "s3", "port": spec.gateway.port, "targetPort": "s3"}]},
    })
    # Every gateway, ready or not: the metrics a ServiceMonitor scrapes, and the admin
    # API the operator calls before the gateway can be ready (it is ready once pods are
    # registered, which is the operator's job).
    internal = _meta(ref, internal_service_name(ref.name), "gateway-internal")
    internal["labels"]["kurastore.io/metrics"] = "true"
    out.append({
        "apiVersion": "v1", "kind": "Service", "metadata": internal,
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                 "selector": selector(ref.name, "gateway"),
                 "ports": [{"name": METRICS_PORT_NAME, "port": spec.gateway.port,
                            "targetPort": "s3"}]},
    })
    return out


def render(ref: StoreRef, spec: ObjectStoreSpec, replicas: dict[str, int],
           values: Secrets) -> list[dict[str, Any]]:
    """Every object of the store, in apply order (Secrets before what mounts them)."""
    return secrets(ref, values) + workloads(ref, spec, replicas)


def workloads(ref: StoreRef, spec: ObjectStoreSpec,
              replicas: dict[str, int]) -> list[dict[str, Any]]:
    """Everything but the Secrets: pools (Service, StatefulSet, PDB) and the gateway."""
    out: list[dict[str, Any]] = []
    for pool in spec.pools:
        out += [pod_service(ref, pool),
                stateful_set(ref, spec, pool, replicas.get(pool.name, pool.pods)),
                disruption_budget(ref, spec, pool)]
    return out + gateway(ref, spec)
