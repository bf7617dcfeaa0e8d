"""The ObjectStore and ObjectStoreUser CustomResourceDefinitions as Python data, and
their rendering to deploy/crds.yaml (`python -m kurastore.operator.crd > deploy/crds.yaml`;
a unit test keeps the file in step).

Rules: schemas are structural (every field typed, no unknown fields kept except where
Kubernetes' own shapes such as resources and tolerations are passed through); defaults
live here, so `kubectl get -o yaml` shows what the operator acts on; the rules only the
API server can check are CEL x-kubernetes-validations: erasure settings are immutable and
dataBlocks + parityBlocks is at most the pod count.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from kurastore.operator.spec import GATEWAY_PORT, GROUP, VERSION

MAX_POOLS = 16
MAX_PODS_PER_POOL = 256


def _int(minimum: int, maximum: int, default: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "integer", "minimum": minimum, "maximum": maximum}
    if default is not None:
        out["default"] = default
    return out


def _number(minimum: float, maximum: float, default: float) -> dict[str, Any]:
    return {"type": "number", "minimum": minimum, "maximum": maximum, "default": default}


def _str(default: str | None = None, enum: list[str] | None = None,
         max_length: int = 253) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "string", "maxLength": max_length}
    if default is not None:
        out["default"] = default
    if enum:
        out["enum"] = enum
    return out


def _obj(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, **extra}


_PASSTHROUGH = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_QUANTITY = {"anyOf": [{"type": "integer"}, {"type": "string"}],
             "x-kubernetes-int-or-string": True,
             "pattern": r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$"}
_STORAGE = _obj({"size": {**_QUANTITY, "default": "10Gi"},
                 "storageClassName": _str()}, default={})

_POOL = _obj({
    "name": {**_str(max_length=40), "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
    "pods": _int(0, MAX_PODS_PER_POOL),
    "zone": _str(default="", max_length=63),
    "storage": _STORAGE,
    "resources": _PASSTHROUGH,
    "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}},
    "tolerations": {"type": "array", "items": _PASSTHROUGH, "maxItems": 32},
}, required=["name", "pods"])

_CONDITIONS = {
    "type": "array", "maxItems": 16,
    "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
    "items": _obj({
        "type": _str(max_length=64), "status": _str(enum=["True", "False", "Unknown"]),
        "reason": _str(max_length=1024), "message": _str(max_length=32768),
        "lastTransitionTime": {"type": "string", "format": "date-time"},
        "observedGeneration": {"type": "integer", "format": "int64"},
    }, required=["type", "status"]),
}

_SPEC = _obj({
    "image": _str(default="kurastore:latest", max_length=512),
    "erasure": _obj({
        "dataBlocks": _int(1, 32, 4),
        "parityBlocks": _int(0, 16, 2),
    }, default={}, **{"x-kubernetes-validations": [
        {"rule": "self == oldSelf", "message": "erasure settings are immutable"}]}),
    "pools": {"type": "array", "minItems": 1, "maxItems": MAX_POOLS, "items": _POOL,
              "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    "gateway": _obj({
        "replicas": _int(1, 64, 1),
        "service": _obj({"type": _str("ClusterIP", ["ClusterIP", "NodePort", "LoadBalancer"]),
                         "port": _int(1, 65535, GATEWAY_PORT)}, default={}),
        "resources": _PASSTHROUGH,
        # Overload and slow clients (README, Reliability): requests served at once, the
        # line waiting for a slot, and the bytes all GETs / all PUTs may hold.
        "maxRequestsInFlight": _int(1, 1 << 16, 256),
        "maxRequestsQueued": _int(0, 1 << 20, 1024),
        "queueWaitSeconds": _number(0, 3600, 2),
        "idleTimeoutSeconds": _number(1, 86400, 30),
        "clientTimeoutSeconds": _number(1, 86400, 30),
        "minBodyBytesPerSecond": {"type": "integer", "minimum": 0, "default": 4096,
                                  "format": "int64"},
        "readBuffer": {**_QUANTITY, "default": "256Mi"},
        "writeBuffer": {**_QUANTITY, "default": "256Mi"},
    }, default={}),
    "metadata": _obj({
        "type": _str("sqlite", ["sqlite", "postgresql"]),
        "storage": {**_STORAGE, "properties": {**_STORAGE["properties"],
                                               "size": {**_QUANTITY, "default": "1Gi"}}},
        "dsnSecretRef": _obj({"name": _str(), "key": _str("dsn")}, required=["name"]),
    }, default={}, **{"x-kubernetes-validations": [
        {"rule": "!has(self.type) || self.type != 'postgresql' || has(self.dsnSecretRef)",
         "message": "postgresql metadata needs dsnSecretRef"}]}),
    "rebalance": _obj({
        "rateBytesPerSecond": {"type": "integer", "minimum": 0, "default": 32 << 20,
                               "format": "int64"},
        "graceSeconds": _int(0, 86400, 300),
        "concurrency": _int(1, 64, 2),
    }, default={}),
    "podAddress": _str("dns", ["dns", "ip"]),
    "reclaimPolicy": _str("Retain", ["Retain", "Delete"]),
    "paused": {"type": "boolean", "default": False},
}, required=["pools"], **{"x-kubernetes-validations": [
    {"rule": "self.erasure.dataBlocks + self.erasure.parityBlocks <= "
             "self.pools.map(p, p.pods).sum()",
     "message": "dataBlocks + parityBlocks must not exceed the total pod count"},
    {"rule": "self.metadata.type == 'postgresql' || self.gateway.replicas == 1",
     "message": "several gateway replicas need postgresql metadata"},
]})

_STATUS = _obj({
    "observedGeneration": {"type": "integer", "format": "int64"},
    "phase": _str(enum=["Pending", "Creating", "Ready", "Scaling", "Rebalancing",
                        "Draining", "Upgrading", "Degraded", "Paused", "Failed"]),
    "message": _str(max_length=4096),
    "conditions": _CONDITIONS,
    "pods": _str(max_length=32),
    "health": _obj({
        "status": _str(enum=["green", "yellow", "red", "unknown"]),
        "podsOnline": {"type": "integer"}, "podsOffline": {"type": "integer"},
        "objectsDegraded": {"type": "integer"}, "healQueue": {"type": "integer"},
    }),
    "placementEpoch": {"type": "integer"},
    "rebalance": _obj({
        "state": _str(enum=["Idle", "Running", "Done"]), "progress": _str(max_length=16),
        "partitionsMoved": {"type": "integer"}, "partitionsLeft": {"type": "integer"},
        "bytesMoved": {"type": "integer", "format": "int64"},
        "bytesLeft": {"type": "integer", "format": "int64"},
        "rateBytesPerSecond": {"type": "number"}, "etaSeconds": {"type": "number"},
        "maxPartitionsLeft": {"type": "integer"},
    }),
    "pools": {"type": "array", "maxItems": MAX_POOLS, "items": _obj({
        "name": _str(), "statefulSet": _str(), "desiredPods": {"type": "integer"},
        "pods": {"type": "integer"}, "readyPods": {"type": "integer"},
        "draining": {"type": "array", "items": _str()},
    })},
    "endpoints": _obj({"s3": _str(max_length=512), "admin": _str(max_length=512)}),
    "capacity": _obj({"totalBytes": {"type": "integer", "format": "int64"},
                      "usedBytes": {"type": "integer", "format": "int64"}}),
    "image": _str(max_length=512),
})

_USER_SPEC = _obj({
    "storeRef": _obj({"name": _str(), "namespace": _str()}, required=["name"]),
    "userName": {**_str(max_length=64), "x-kubernetes-validations": [
        {"rule": "self == oldSelf", "message": "userName is immutable"}]},
    "secretName": _str(),
    "admin": {"type": "boolean", "default": False},
}, required=["storeRef"])

_USER_STATUS = _obj({
    "observedGeneration": {"type": "integer", "format": "int64"},
    "phase": _str(enum=["Pending", "Ready", "Failed"]),
    "message": _str(max_length=4096),
    "accessKey": _str(),
    "secretName": _str(),
    "conditions": _CONDITIONS,
})


def _column(name: str, path: str, kind: str = "string", priority: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "type": kind, "jsonPath": path}
    if priority:
        out["priority"] = priority
    return out


def _crd(kind: str, plural: str, short: list[str], spec: dict[str, Any],
         status: dict[str, Any], columns: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}",
                     "labels": {"app.kubernetes.io/name": "kurastore",
                                "app.kubernetes.io/part-of": "kurastore"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": kind, "listKind": f"{kind}List", "plural": plural,
                      "singular": kind.lower(), "shortNames": short,
                      "categories": ["kurastore"]},
            "versions": [{
                "name": VERSION, "served": True, "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": columns,
                "schema": {"openAPIV3Schema": _obj(
                    {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                     "metadata": {"type": "object"}, "spec": spec, "status": status},
                    required=["spec"])},
            }],
        },
    }


def object_store_crd() -> dict[str, Any]:
    ready = '.status.conditions[?(@.type=="Ready")].status'
    return _crd("ObjectStore", "objectstores", ["ostore"], _SPEC, _STATUS, [
        _column("Ready", ready), _column("Phase", ".status.phase"),
        _column("Health", ".status.health.status"), _column("Pods", ".status.pods"),
        _column("Epoch", ".status.placementEpoch", "integer"),
        _column("Rebalance", ".status.rebalance.progress"),
        _column("Image", ".status.image", priority=1),
        _column("Age", ".metadata.creationTimestamp", "date"),
    ])


def object_store_user_crd() -> dict[str, Any]:
    return _crd("ObjectStoreUser", "objectstoreusers", ["ouser"], _USER_SPEC, _USER_STATUS, [
        _column("Store", ".spec.storeRef.name"), _column("Phase", ".status.phase"),
        _column("Secret", ".status.secretName"),
        _column("Age", ".metadata.creationTimestamp", "date"),
    ])


def crds() -> list[dict[str, Any]]:
    return [object_store_crd(), object_store_user_crd()]


def render_yaml() -> str:
    header = "# Generated by `python -m kurastore.operator.crd`; do not edit.\n"
    return header + yaml.safe_dump_all(crds(), sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(render_yaml())
