"""The ObjectStore spec as typed values: one parse, with the CRD's defaults applied again
here so that the reconciler never sees a missing field (the API server applies them too,
but the local platform and the unit tests build specs without one).

Rules: parsing is pure and strict about types; anything the CRD's schema would refuse
raises SpecError with the field's path, so a bad spec becomes a condition, not a crash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

GROUP = "kurastore.io"
VERSION = "v1alpha1"
DEFAULT_IMAGE = "kurastore:latest"
POD_PORT = 9100
GATEWAY_PORT = 9000
MIN_BUFFER_BYTES = 1 << 20  # a gateway's read and write buffers (a stripe or more)


class SpecError(ValueError):
    """The spec cannot be used as given; the message names the field."""


@dataclass(frozen=True)
class Erasure:
    data_blocks: int = 4
    parity_blocks: int = 2

    @property
    def width(self) -> int:
        return self.data_blocks + self.parity_blocks


@dataclass(frozen=True)
class Pool:
    name: str
    pods: int
    zone: str = ""
    storage_size: str = "10Gi"
    storage_class: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class GatewayLoad:
    """Overload and slow-client settings of each gateway (GatewayConfig's defaults)."""

    max_requests_in_flight: int = 256
    max_requests_queued: int = 1024
    queue_wait_s: float = 2.0
    idle_timeout_s: float = 30.0
    client_timeout_s: float = 30.0
    min_body_bytes_s: int = 4096
    read_buffer_bytes: int = 256 << 20
    write_buffer_bytes: int = 256 << 20


@dataclass(frozen=True)
class Gateway:
    replicas: int = 1
    service_type: str = "ClusterIP"
    port: int = GATEWAY_PORT
    resources: dict[str, Any] = field(default_factory=dict)
    load: GatewayLoad = GatewayLoad()


@dataclass(frozen=True)
class Metadata:
    """Embedded SQLite on a volume (one gateway), or PostgreSQL from a Secret (many)."""

    kind: str = "sqlite"  # sqlite | postgresql
    storage_size: str = "1Gi"
    storage_class: str | None = None
    dsn_secret_name: str | None = None
    dsn_secret_key: str = "dsn"


@dataclass(frozen=True)
class Rebalance:
    rate_bytes_s: int = 32 << 20  # 0: unlimited
    grace_s: int = 300
    concurrency: int = 2  # partitions moved at once


@dataclass(frozen=True)
class ObjectStoreSpec:
    image: str = DEFAULT_IMAGE
    erasure: Erasure = Erasure()
    pools: tuple[Pool, ...] = ()
    gateway: Gateway = Gateway()
    metadata: Metadata = Metadata()
    rebalance: Rebalance = Rebalance()
    pod_address: str = "dns"  # dns | ip: how pods are registered with the store
    reclaim_policy: str = "Retain"
    paused: bool = False

    @property
    def total_pods(self) -> int:
        return sum(pool.pods for pool in self.pools)

    @property
    def gateway_replicas(self) -> int:
        # One SQLite file has one writer: a second gateway needs PostgreSQL.
        return 1 if self.metadata.kind == "sqlite" else self.gateway.replicas


def _get(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any,
         path: str) -> Any:
    value = doc.get(key, default)
    if value is None:
        return default
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise SpecError(f"{path}.{key}: expected {getattr(kind, '__name__', kind)}")
    return value


def _obj(doc: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    return _get(doc, key, dict, {}, path)


_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?")
_QUANTITY_UNITS = {None: 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15,
                   "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50}


def quantity_bytes(value: int | str, path: str) -> int:
    """A Kubernetes quantity of bytes (`256Mi`, `1G`, `1048576`) as an integer."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    found = _QUANTITY.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise SpecError(f"{path}: expected a quantity such as 256Mi")
    return int(float(found[1]) * _QUANTITY_UNITS[found[2]])


def _seconds(doc: dict[str, Any], key: str, default: float, path: str,
             minimum: float = 0) -> float:
    value = _get(doc, key, (int, float), default, path)
    if isinstance(value, bool) or value < minimum:
        raise SpecError(f"{path}.{key}: a number >= {minimum:g}")
    return float(value)


def _bytes(doc: dict[str, Any], key: str, default: int, path: str) -> int:
    value = doc.get(key)
    return default if value is None else quantity_bytes(value, f"{path}.{key}")


def _gateway_load(gw: dict[str, Any]) -> GatewayLoad:
    path = "spec.gateway"
    d = GatewayLoad()
    load = GatewayLoad(
        max_requests_in_flight=_get(gw, "maxRequestsInFlight", int,
                                    d.max_requests_in_flight, path),
        max_requests_queued=_get(gw, "maxRequestsQueued", int, d.max_requests_queued, path),
        queue_wait_s=_seconds(gw, "queueWaitSeconds", d.queue_wait_s, path),
        idle_timeout_s=_seconds(gw, "idleTimeoutSeconds", d.idle_timeout_s, path, 1),
        client_timeout_s=_seconds(gw, "clientTimeoutSeconds", d.client_timeout_s, path, 1),
        min_body_bytes_s=_get(gw, "minBodyBytesPerSecond", int, d.min_body_bytes_s, path),
        read_buffer_bytes=_bytes(gw, "readBuffer", d.read_buffer_bytes, path),
        write_buffer_bytes=_bytes(gw, "writeBuffer", d.write_buffer_bytes, path),
    )
    if load.max_requests_in_flight < 1 or load.max_requests_queued < 0:
        raise SpecError(f"{path}: maxRequestsInFlight >= 1 and maxRequestsQueued >= 0")
    if load.min_body_bytes_s < 0:
        raise SpecError(f"{path}.minBodyBytesPerSecond: must be >= 0")
    for name, value in (("readBuffer", load.read_buffer_bytes),
                        ("writeBuffer", load.write_buffer_bytes)):
        if value < MIN_BUFFER_BYTES:
            raise SpecError(f"{path}.{name}: at least 1Mi")
    return load


def _pool(doc: Any, path: str) -> Pool:
    if not isinstance(doc, dict):
        raise SpecError(f"{path}: expected an object")
    name = _get(doc, "name", str, "", path)
    if not name:
        raise SpecError(f"{path}.name: required")
    pods = _get(doc, "pods", int, 0, path)
    if pods < 0:
        raise SpecError(f"{path}.pods: must be >= 0")
    storage = _obj(doc, "storage", path)
    return Pool(
        name=name, pods=pods, zone=_get(doc, "zone", str, "", path),
        storage_size=str(_get(storage, "size", (str, int), "10Gi", f"{path}.storage")),
        storage_class=_get(storage, "storageClassName", str, None, f"{path}.storage"),
        resources=_obj(doc, "resources", path),
        node_selector=_obj(doc, "nodeSelector", path),
        tolerations=tuple(_get(doc, "tolerations", list, [], path)),
    )


def parse_spec(doc: dict[str, Any]) -> ObjectStoreSpec:
    """The typed spec of an ObjectStore's `.spec`, defaults applied."""
    if not isinstance(doc, dict):
        raise SpecError("spec: expected an object")
    erasure_doc = _obj(doc, "erasure", "spec")
    erasure = Erasure(_get(erasure_doc, "dataBlocks", int, 4, "spec.erasure"),
                      _get(erasure_doc, "parityBlocks", int, 2, "spec.erasure"))
    if erasure.data_blocks < 1 or erasure.parity_blocks < 0:
        raise SpecError("spec.erasure: dataBlocks >= 1 and parityBlocks >= 0")
    pools = tuple(_pool(p, f"spec.pools[{i}]")
                  for i, p in enumerate(_get(doc, "pools", list, [], "spec")))
    if len({p.name for p in pools}) != len(pools):
        raise SpecError("spec.pools: names must be unique")
    gw = _obj(doc, "gateway", "spec")
    gw_service = _obj(gw, "service", "spec.gateway")
    md = _obj(doc, "metadata", "spec")
    md_kind = _get(md, "type", str, "sqlite", "spec.metadata")
    if md_kind not in ("sqlite", "postgresql"):
        raise SpecError("spec.metadata.type: sqlite or postgresql")
    md_storage = _obj(md, "storage", "spec.metadata")
    dsn_ref = _obj(md, "dsnSecretRef", "spec.metadata")
    if md_kind == "postgresql" and not dsn_ref.get("name"):
        raise SpecError("spec.metadata.dsnSecretRef.name: required for postgresql")
    rb = _obj(doc, "rebalance", "spec")
    address = _get(doc, "podAddress", str, "dns", "spec")
    if address not in ("dns", "ip"):
        raise SpecError("spec.podAddress: dns or ip")
    reclaim = _get(doc, "reclaimPolicy", str, "Retain", "spec")
    if reclaim not in ("Retain", "Delete"):
        raise SpecError("spec.reclaimPolicy: Retain or Delete")
    return ObjectStoreSpec(
        image=_get(doc, "image", str, DEFAULT_IMAGE, "spec"),
        erasure=erasure,
        pools=pools,
        gateway=Gateway(
            replicas=_get(gw, "replicas", int, 1, "spec.gateway"),
            service_type=_get(gw_service, "type", str, "ClusterIP", "spec.gateway.service"),
            port=_get(gw_service, "port", int, GATEWAY_PORT, "spec.gateway.service"),
            resources=_obj(gw, "resources", "spec.gateway"),
            load=_gateway_load(gw),
        ),
        metadata=Metadata(
            kind=md_kind,
            storage_size=str(_get(md_storage, "size", (str, int), "1Gi", "spec.metadata")),
            storage_class=_get(md_storage, "storageClassName", str, None, "spec.metadata"),
            dsn_secret_name=dsn_ref.get("name"),
            dsn_secret_key=dsn_ref.get("key", "dsn"),
        ),
        rebalance=Rebalance(
            rate_bytes_s=_get(rb, "rateBytesPerSecond", int, 32 << 20, "spec.rebalance"),
            grace_s=_get(rb, "graceSeconds", int, 300, "spec.rebalance"),
            concurrency=_get(rb, "concurrency", int, 2, "spec.rebalance"),
        ),
        pod_address=address,
        reclaim_policy=reclaim,
        paused=_get(doc, "paused", bool, False, "spec"),
    )


@dataclass(frozen=True)
class UserSpec:
    store: str  # the ObjectStore's name
    store_namespace: str
    user_name: str
    secret_name: str
    admin: bool = False


def parse_user_spec(doc: dict[str, Any], namespace: str, name: str) -> UserSpec:
    """The spec of an ObjectStoreUser; the store defaults to the user's namespace and the
    user name and Secret name to the resource's name."""
    store_ref = _obj(doc, "storeRef", "spec")
    store = _get(store_ref, "name", str, "", "spec.storeRef")
    if not store:
        raise SpecError("spec.storeRef.name: required")
    return UserSpec(
        store=store,
        store_namespace=_get(store_ref, "namespace", str, namespace, "spec.storeRef"),
        user_name=_get(doc, "userName", str, name, "spec"),
        secret_name=_get(doc, "secretName", str, f"{name}-keys", "spec"),
        admin=_get(doc, "admin", bool, False, "spec"),
    )
