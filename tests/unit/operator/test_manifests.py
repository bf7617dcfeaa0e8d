"""Generated manifests checked offline: built-in kinds against Kubernetes 1.36's schemas
(kubernetes-validate, strict: unknown fields are errors), our samples against our CRDs'
openAPIV3Schema (jsonschema); deploy/crds.yaml is what crd.py renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from kurastore.operator import crd, manifests
from kurastore.operator.spec import SpecError, parse_spec

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
K8S = "1.36"
REF = manifests.StoreRef("demo", "storage", "0b5c7a52-0000-4000-8000-000000000001")
VALUES = manifests.Secrets("ab" * 32, "cd" * 32, "KSACCESS", "secret/key")


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _schema(kind: str) -> dict[str, Any]:
    found = next(c for c in crd.crds() if c["spec"]["names"]["kind"] == kind)
    return found["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _sample_spec() -> Any:
    sample = _docs(DEPLOY / "samples" / "objectstore.yaml")[0]
    return parse_spec(sample["spec"])


def test_crds_yaml_is_what_crd_py_renders() -> None:
    assert (DEPLOY / "crds.yaml").read_text() == crd.render_yaml(), (
        "run: python -m kurastore.operator.crd > deploy/crds.yaml")


@pytest.mark.parametrize("name", ["crds.yaml", "rbac.yaml", "operator.yaml"])
def test_deploy_files_are_valid_kubernetes(name: str) -> None:
    docs = _docs(DEPLOY / name)
    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S, strict=True)


def test_rendered_objects_are_valid_kubernetes() -> None:
    spec = _sample_spec()
    objects = manifests.render(REF, spec, {"main": 6}, VALUES)
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["Deployment", "PersistentVolumeClaim", "PodDisruptionBudget", "Secret",
                     "Secret", "Service", "Service", "Service", "StatefulSet"]
    for obj in objects:
        kubernetes_validate.validate(obj, K8S, strict=True)


def test_postgresql_store_renders_a_surging_gateway_without_a_volume() -> None:
    spec = parse_spec({"pools": [{"name": "a", "pods": 4}, {"name": "b", "pods": 4}],
                       "gateway": {"replicas": 3},
                       "metadata": {"type": "postgresql", "dsnSecretRef": {"name": "pg"}}})
    objects = manifests.render(REF, spec, {"a": 4, "b": 4}, VALUES)
    for obj in objects:
        kubernetes_validate.validate(obj, K8S, strict=True)
    deploy = next(o for o in objects if o["kind"] == "Deployment")
    assert deploy["spec"]["replicas"] == 3
    assert deploy["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    env = {e["name"]: e for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KURASTORE_METADATA_DSN"]["valueFrom"]["secretKeyRef"]["name"] == "pg"
    assert not any(o["kind"] == "PersistentVolumeClaim" for o in objects)


def test_everything_is_owned_by_the_store_except_retained_volumes() -> None:
    objects = manifests.render(REF, _sample_spec(), {"main": 6}, VALUES)
    for obj in objects:
        meta = obj["metadata"]
        assert meta["labels"]["app.kubernetes.io/instance"] == "demo"
        assert meta["namespace"] == "storage"
        owners = meta.get("ownerReferences", [])
        if obj["kind"] == "PersistentVolumeClaim":
            assert owners == []  # reclaimPolicy Retain: the metadata volume outlives the CR
        else:
            assert owners == [manifests.owner_reference(REF)], obj["kind"]
    sts = next(o for o in objects if o["kind"] == "StatefulSet")
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"


def test_statefulset_runs_pods_on_their_volume_and_updates_on_delete() -> None:
    sts = manifests.stateful_set(REF, _sample_spec(), _sample_spec().pools[0], 7)
    assert sts["spec"]["replicas"] == 7
    assert sts["spec"]["updateStrategy"] == {"type": "OnDelete"}
    assert sts["spec"]["serviceName"] == "demo-main"
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["kurastore"]
    assert container["args"][:5] == ["pod", "--data", "/data", "--listen", "$(POD_IP):9100"]
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"


@pytest.mark.parametrize(("m", "pools", "budget"), [(2, 1, 1), (3, 1, 2), (3, 2, 1),
                                                    (4, 1, 3), (1, 1, 1), (0, 1, 0)])
def test_disruption_budget_follows_the_erasure_geometry(m: int, pools: int,
                                                        budget: int) -> None:
    spec = parse_spec({"erasure": {"dataBlocks": 4, "parityBlocks": m},
                       "pools": [{"name": f"p{i}", "pods": 8} for i in range(pools)]})
    pdb = manifests.disruption_budget(REF, spec, spec.pools[0])
    assert pdb["spec"]["maxUnavailable"] == budget


@pytest.mark.parametrize(("kind", "sample"), [("ObjectStore", "objectstore.yaml"),
                                              ("ObjectStoreUser", "objectstoreuser.yaml")])
def test_samples_match_our_crd_schemas(kind: str, sample: str) -> None:
    doc = _docs(DEPLOY / "samples" / sample)[0]
    assert doc["kind"] == kind
    jsonschema.validate(doc, _schema(kind))


def test_rebalance_settings_reach_the_gateway_command_line() -> None:
    spec = parse_spec({"pools": [{"name": "a", "pods": 6}],
                       "rebalance": {"rateBytesPerSecond": 0, "graceSeconds": 60,
                                     "concurrency": 4}})
    objects = manifests.render(REF, spec, {"a": 6}, VALUES)
    deploy = next(o for o in objects if o["kind"] == "Deployment")
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    given = dict(zip(args[1::2], args[2::2], strict=False))
    assert given["--rebalance-rate"] == "0"
    assert given["--rebalance-grace"] == "60"
    assert given["--rebalance-concurrency"] == "4"
    assert parse_spec({"pools": [{"name": "a", "pods": 6}]}).rebalance.concurrency == 2


def _gateway_args(spec: Any) -> dict[str, str]:
    objects = manifests.render(REF, spec, {"a": 6}, VALUES)
    deploy = next(o for o in objects if o["kind"] == "Deployment")
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    return dict(zip(args[1::2], args[2::2], strict=False))


def test_gateway_load_settings_reach_the_gateway_command_line() -> None:
    given = _gateway_args(parse_spec({
        "pools": [{"name": "a", "pods": 6}],
        "gateway": {"maxRequestsInFlight": 64, "maxRequestsQueued": 0,
                    "queueWaitSeconds": 0.5, "idleTimeoutSeconds": 120,
                    "clientTimeoutSeconds": 45, "minBodyBytesPerSecond": 1024,
                    "readBuffer": "64Mi", "writeBuffer": "1G"}}))
    assert given["--max-in-flight"] == "64"
    assert given["--max-queued"] == "0"
    assert given["--queue-wait"] == "0.5"
    assert given["--idle-timeout"] == "120"
    assert given["--client-timeout"] == "45"
    assert given["--min-body-rate"] == "1024"
    assert given["--read-buffer"] == str(64 << 20)
    assert given["--write-buffer"] == str(10**9)
    # Without them, the gateway's own defaults, spelled out (as the CRD's defaults are).
    defaults = _gateway_args(parse_spec({"pools": [{"name": "a", "pods": 6}]}))
    assert defaults["--max-in-flight"] == "256"
    assert defaults["--read-buffer"] == defaults["--write-buffer"] == str(256 << 20)


def test_the_gateway_flags_the_operator_writes_parse_as_it_means_them() -> None:
    from kurastore.cli import _load_settings, build_parser

    spec = parse_spec({"pools": [{"name": "a", "pods": 6}],
                       "gateway": {"queueWaitSeconds": 1.5, "readBuffer": "1.5Gi"}})
    objects = manifests.render(REF, spec, {"a": 6}, VALUES)
    deploy = next(o for o in objects if o["kind"] == "Deployment")
    args = deploy["spec"]["template"]["spec"]["containers"][0]["args"]
    settings = _load_settings(build_parser().parse_args(args))
    assert settings == {
        "max_in_flight_requests": 256, "max_queued_requests": 1024, "queue_wait_s": 1.5,
        "idle_timeout_s": 30.0, "client_timeout_s": 30.0, "min_body_rate_bytes_s": 4096.0,
        "read_buffer_bytes": 3 << 29, "write_buffer_bytes": 256 << 20,
    }


@pytest.mark.parametrize(("field", "value"), [
    ("readBuffer", "lots"), ("readBuffer", "512Ki"), ("writeBuffer", 1000),
    ("maxRequestsInFlight", 0), ("idleTimeoutSeconds", 0), ("queueWaitSeconds", True),
    ("minBodyBytesPerSecond", -1),
])
def test_bad_gateway_load_settings_name_their_field(field: str, value: Any) -> None:
    with pytest.raises(SpecError, match=field):
        parse_spec({"pools": [{"name": "a", "pods": 6}], "gateway": {field: value}})


@pytest.mark.parametrize("bad_spec", [
    {"pools": [{"name": "a", "pods": "six"}]},
    {"pools": [{"name": "A_b", "pods": 6}]},
    {"pools": [{"name": "a", "pods": 6}], "erasure": {"dataBlocks": 0}},
    {"pools": [{"name": "a", "pods": 6}], "reclaimPolicy": "Shred"},
    {"pools": [{"name": "a", "pods": 6}], "rebalance": {"concurrency": 0}},
    {"pools": [{"name": "a", "pods": 6}], "gateway": {"writeBuffer": "256MB"}},
    {"pools": [{"name": "a", "pods": 6}], "gateway": {"clientTimeoutSeconds": 0}},
    {"pools": []},
])
def test_crd_schema_refuses_malformed_specs(bad_spec: dict[str, Any]) -> None:
    doc = {"apiVersion": "kurastore.io/v1alpha1", "kind": "ObjectStore",
           "metadata": {"name": "x"}, "spec": bad_spec}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, _schema("ObjectStore"))


def test_crd_carries_the_cel_rules_and_printer_columns() -> None:
    version = crd.object_store_crd()["spec"]["versions"][0]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["erasure"]["x-kubernetes-validations"][0]["rule"] == (
        "self == oldSelf")
    assert "sum()" in spec["x-kubernetes-validations"][0]["rule"]
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[:6] == ["Ready", "Phase", "Health", "Pods", "Epoch", "Rebalance"]
    assert columns[-1] == "Age"
    assert version["subresources"] == {"status": {}}


def test_the_crd_defaults_are_the_gateways_own() -> None:
    # The operator may not import the gateway (layering): this keeps the copies in step.
    import dataclasses

    from kurastore.gateway.config import GatewayConfig
    from kurastore.operator.spec import GatewayLoad

    default = {f.name: f.default for f in dataclasses.fields(GatewayConfig)}
    load = GatewayLoad()
    assert (load.max_requests_in_flight, load.max_requests_queued, load.queue_wait_s,
            load.idle_timeout_s, load.client_timeout_s, load.min_body_bytes_s,
            load.read_buffer_bytes, load.write_buffer_bytes) == tuple(default[name] for name in (
                "max_in_flight_requests", "max_queued_requests", "queue_wait_s",
                "idle_timeout_s", "client_timeout_s", "min_body_rate_bytes_s",
                "read_buffer_bytes", "write_buffer_bytes"))
    schema = crd.object_store_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    props = schema["properties"]["spec"]["properties"]["gateway"]["properties"]
    assert props["maxRequestsInFlight"]["default"] == load.max_requests_in_flight
    assert props["writeBuffer"]["default"] == "256Mi"
