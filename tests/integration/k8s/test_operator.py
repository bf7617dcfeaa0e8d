"""The operator against a real control plane: deploy/ applied as a user would, the operator
run as `kurastore operator` under its own ServiceAccount's RBAC, pods as real processes.

An ObjectStore of 6 pods (4+2) serves S3 through its gateway Service; a pool scales
6 -> 8 -> 6 while a client keeps reading and writing; every object reads back byte-exact,
no request fails, the status shows the rebalance and ends Ready; ObjectStoreUser keys work
and stop working once the user is deleted; invalid erasure settings never get in.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from botocore.exceptions import ClientError
from lightkube import ApiError, Client, codecs
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apiextensions_v1 import CustomResourceDefinition
from lightkube.resources.apps_v1 import StatefulSet
from lightkube.resources.core_v1 import Namespace, Pod, Secret
from lightkube.types import PatchType
from support.kube import ControlPlane, wait_until
from support.kubelet import Kubelet
from support.s3client import error_code, make_client

from kurastore.gateway.admin.client import AdminClient
from kurastore.operator.leader import LeaderElection
from kurastore.operator.platforms.kubernetes import ObjectStore, ObjectStoreUser

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
OPERATOR_NS = "kurastore-system"
KiB = 1 << 10
SIZES = [5 * KiB, 80 * KiB, 200 * KiB, 600 * KiB + 17]  # 5 KiB is stored inline
OBJECTS = 2000
INLINE = 64 * KiB  # the gateway's inline threshold: smaller objects have no shards

STORE = """
apiVersion: kurastore.io/v1alpha1
kind: ObjectStore
metadata: {name: demo}
spec:
  erasure: {dataBlocks: 4, parityBlocks: 2}
  pools: [{name: main, pods: 6, storage: {size: 1Gi}}]
  podAddress: ip
  metadata: {storage: {size: 1Gi}}
  rebalance: {rateBytesPerSecond: 16777216, graceSeconds: 2}
"""


def _docs(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="module")
def operator(control_plane: ControlPlane, kube: Client,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[subprocess.Popen[bytes]]:
    """deploy/ applied (the operator Deployment itself only by server-side dry run: no
    image runs here), then the operator as a process with the ServiceAccount's identity."""
    for doc in _docs(DEPLOY / "crds.yaml"):
        kube.apply(codecs.from_dict(doc), force=True)
    for name in ("objectstores.kurastore.io", "objectstoreusers.kurastore.io"):
        wait_until(lambda n=name: any(
            c.type == "Established" and c.status == "True"
            for c in (kube.get(CustomResourceDefinition, n).status.conditions or [])),
            30, f"CRD {name} established")
    for path in (DEPLOY / "operator.yaml", DEPLOY / "rbac.yaml"):
        for doc in _docs(path):
            obj = codecs.from_dict(doc)
            if doc["kind"] == "Deployment":
                kube.apply(obj, force=True, dry_run=True)
            else:
                kube.apply(obj, force=True)
    log_path = tmp_path_factory.mktemp("operator") / "operator.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KURASTORE_")}
    env["KUBECONFIG"] = str(control_plane.service_account_kubeconfig(
        OPERATOR_NS, "kurastore-operator"))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "kurastore", "operator", "--pod-address", "ip",
             "--resync", "10", "--lease-namespace", OPERATOR_NS],
            stdout=log, stderr=subprocess.STDOUT, env=env)
    proc.log_path = log_path  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.returncode not in (0, -15):
            print(log_path.read_text()[-5000:])


def _new_namespace(kube: Client, name: str) -> str:
    kube.create(Namespace(metadata=ObjectMeta(name=name)))
    return name


def _status(kube: Client, namespace: str) -> dict[str, Any]:
    return kube.get(ObjectStore, "demo", namespace=namespace).get("status") or {}


@pytest.fixture(scope="module")
def store(operator: subprocess.Popen[bytes], kube: Client,
          kubelet: Kubelet) -> Iterator[dict[str, Any]]:
    """A ready 6-pod store; yields its namespace, S3 endpoint and root keys."""
    ns = _new_namespace(kube, f"store-{os.getpid()}")
    kube.create(codecs.from_dict(yaml.safe_load(STORE)), namespace=ns)
    try:
        try:
            wait_until(lambda: _status(kube, ns).get("phase") == "Ready", 180, "store Ready")
        except TimeoutError:
            print("status:", _status(kube, ns))
            print("operator log:", operator.log_path.read_text()[-6000:])  # type: ignore
            raise
        secret = kube.get(Secret, "demo-admin", namespace=ns)
        keys = {k: base64.b64decode(v).decode()
                for k, v in (secret.data or {}).items()}
        host, port = kubelet.service_address(ns, "demo-gateway", 9000)
        yield {"namespace": ns, "endpoint": f"http://{host}:{port}",
               "access": keys["access-key"], "secret": keys["secret-key"]}
    finally:
        kube.delete(ObjectStore, "demo", namespace=ns)
        kube.delete(Namespace, ns)


class Traffic:
    """A client reading known objects and writing new ones until stopped."""

    def __init__(self, s3: Any, known: dict[str, bytes]) -> None:
        self.s3 = s3
        self.known = known
        self.written: dict[str, bytes] = {}
        self.requests = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = random.Random(7)
        keys = list(self.known)
        n = 0
        while not self._stop.is_set():
            key = rng.choice(keys)
            try:
                if self.s3.get_object(Bucket="data", Key=key)["Body"].read() != self.known[key]:
                    self.failures.append(f"GET {key}: wrong bytes")
                if n % 2 == 0:
                    key = f"live/{n}"
                    body = os.urandom(rng.choice(SIZES))
                    self.s3.put_object(Bucket="data", Key=key, Body=body)
                    self.written[key] = body
                self.requests += 2 if n % 2 == 0 else 1
            except Exception as exc:  # every failure is a test failure, reported at the end
                self.failures.append(f"{key}: {exc!r}")
            n += 1

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)


def _admin(store: dict[str, Any], call: str) -> Any:
    async def run() -> Any:
        async with AdminClient(store["endpoint"], store["access"], store["secret"]) as admin:
            return await getattr(admin, call)()

    return asyncio.run(run())


def _scale(kube: Client, ns: str, pods: int) -> None:
    kube.patch(ObjectStore, "demo", {"spec": {"pools": [
        {"name": "main", "pods": pods, "storage": {"size": "1Gi"}}]}},
        namespace=ns, patch_type=PatchType.MERGE)


def _watch_status(kube: Client, ns: str, until: Any, timeout_s: float,
                  seen: list[dict[str, Any]]) -> dict[str, Any]:
    """Poll the status until `until(status)`, keeping every distinct status seen."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = _status(kube, ns)
        if not seen or status != seen[-1]:
            seen.append(status)
        if until(status):
            return status
        time.sleep(0.3)
    raise AssertionError(f"status never matched; last: {seen[-1] if seen else None}")


def test_store_serves_s3_and_scales_a_pool_under_traffic(store: dict[str, Any],
                                                         kube: Client) -> None:
    ns = store["namespace"]
    s3 = make_client(store["endpoint"], store["access"], store["secret"])
    s3.create_bucket(Bucket="data")
    rng = random.Random(1)
    objects = {f"o/{i:04d}": rng.randbytes(SIZES[i % len(SIZES)]) for i in range(OBJECTS)}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda kv: s3.put_object(Bucket="data", Key=kv[0], Body=kv[1]),
                      objects.items()))
    before = _status(kube, ns)
    assert before["pods"] == "6/6" and before["health"]["status"] == "green"
    epoch = before["placementEpoch"]
    moved_before = _admin(store, "rebalance")["shards_moved"]
    with_shards = sum(1 for body in objects.values() if len(body) > INLINE)

    seen: list[dict[str, Any]] = []
    with Traffic(s3, objects) as traffic:
        _scale(kube, ns, 8)
        grown = _watch_status(kube, ns, lambda s: s.get("phase") == "Ready"
                              and s.get("pods") == "8/8" and s.get("placementEpoch", 0) > epoch,
                              180, seen)
        # 6 -> 8 pods: ideally 2/8 of the shards move (and nothing else).
        moved = _admin(store, "rebalance")["shards_moved"] - moved_before
        written = sum(1 for body in traffic.written.values() if len(body) > INLINE)
        ideal = 2 / 8
        assert ideal / 1.15 * 6 * with_shards <= moved, (moved, with_shards)
        assert moved <= ideal * 1.15 * 6 * (with_shards + written), (moved, written)
        print(f"6->8: {moved} shards moved; ideal {ideal * 6 * with_shards:.0f}"
              f"..{ideal * 6 * (with_shards + written):.0f}")
        assert any(s.get("rebalance", {}).get("state") == "Running"
                   and s["rebalance"]["partitionsLeft"] > 0 for s in seen), (
            "the status never showed the rebalance under way")
        _scale(kube, ns, 6)
        shrunk = _watch_status(kube, ns, lambda s: s.get("phase") == "Ready"
                               and s.get("pods") == "6/6"
                               and s.get("placementEpoch", 0) > grown["placementEpoch"]
                               and not s["pools"][0]["draining"], 240, seen)
    assert any(s.get("phase") == "Draining" for s in seen)
    assert kube.get(StatefulSet, "demo-main", namespace=ns).spec.replicas == 6
    assert shrunk["health"]["status"] == "green"
    ready = next(c for c in shrunk["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"

    assert not traffic.failures, traffic.failures[:5]
    assert traffic.requests > 20 and traffic.written
    print(f"{traffic.requests} requests during 6->8->6, none failed; phases seen:",
          [s.get("phase") for s in seen][:40])
    print("rebalance progress seen:", sorted({s["rebalance"]["progress"] for s in seen
                                              if s.get("rebalance")}))
    everything = {**objects, **traffic.written}
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        wrong = [key for key, same in zip(everything, pool.map(
            lambda kv: s3.get_object(Bucket="data", Key=kv[0])["Body"].read() == kv[1],
            everything.items()), strict=True) if not same]
    assert not wrong, wrong[:5]


def test_rolling_upgrade_restarts_one_pod_at_a_time(store: dict[str, Any], kube: Client,
                                                    kubelet: Kubelet) -> None:
    ns = store["namespace"]
    s3 = make_client(store["endpoint"], store["access"], store["secret"])
    s3.put_object(Bucket="data", Key="upgrade/probe", Body=b"before the upgrade")
    kube.patch(ObjectStore, "demo", {"spec": {"image": "kurastore:next"}},
               namespace=ns, patch_type=PatchType.MERGE)
    most_down = 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        pods = list(kube.list(Pod, namespace=ns, labels={"kurastore.io/pool": "main"}))
        down = sum(1 for p in pods if p.metadata.deletionTimestamp is not None
                   or not any(c.type == "Ready" and c.status == "True"
                              for c in (p.status.conditions or [])))
        most_down = max(most_down, down + 6 - len(pods))
        if len(pods) == 6 and down == 0 and all(
                p.spec.containers[0].image == "kurastore:next" for p in pods) and (
                _status(kube, ns).get("phase") == "Ready"):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"upgrade did not finish: {_status(kube, ns)}")
    assert most_down == 1  # one pod at a time, never two
    assert s3.get_object(Bucket="data", Key="upgrade/probe")["Body"].read() == (
        b"before the upgrade")


def test_object_store_user_keys_work_until_the_user_is_deleted(
        store: dict[str, Any], kube: Client) -> None:
    ns = store["namespace"]
    kube.create(codecs.from_dict({
        "apiVersion": "kurastore.io/v1alpha1", "kind": "ObjectStoreUser",
        "metadata": {"name": "app"}, "spec": {"storeRef": {"name": "demo"}}}), namespace=ns)
    secret = wait_until(lambda: kube.get(Secret, "app-keys", namespace=ns), 60, "user Secret")
    assert secret.metadata.ownerReferences[0].kind == "ObjectStoreUser"
    data = {k: base64.b64decode(v).decode() for k, v in secret.data.items()}
    s3 = make_client(store["endpoint"], data["access-key"], data["secret-key"])
    s3.create_bucket(Bucket="app-bucket")
    s3.put_object(Bucket="app-bucket", Key="k", Body=b"hello")
    assert s3.get_object(Bucket="app-bucket", Key="k")["Body"].read() == b"hello"
    status = kube.get(ObjectStoreUser, "app", namespace=ns).get("status") or {}
    assert status.get("phase") == "Ready" and status.get("accessKey") == data["access-key"]

    kube.delete(ObjectStoreUser, "app", namespace=ns)

    def refused() -> bool:
        try:
            s3.list_buckets()
        except ClientError as exc:
            return error_code(exc) in ("InvalidAccessKeyId", "AccessDenied")
        return False

    wait_until(refused, 60, "the deleted user's key refused")
    wait_until(lambda: _gone(kube, ObjectStoreUser, "app", ns), 30, "user resource gone")


def _gone(kube: Client, kind: Any, name: str, ns: str) -> bool:
    try:
        kube.get(kind, name, namespace=ns)
    except ApiError as exc:
        return exc.status.code == 404
    return False


def test_invalid_erasure_settings_are_refused_by_the_api_server(
        operator: subprocess.Popen[bytes], kube: Client, namespace: str) -> None:
    too_wide = yaml.safe_load(STORE)
    too_wide["spec"]["erasure"] = {"dataBlocks": 8, "parityBlocks": 3}
    with pytest.raises(ApiError) as refused:
        kube.create(codecs.from_dict(too_wide), namespace=namespace, dry_run=True)
    assert refused.value.status.code == 422
    assert "must not exceed the total pod count" in refused.value.status.message

    paused = yaml.safe_load(STORE)
    paused["spec"]["paused"] = True
    kube.create(codecs.from_dict(paused), namespace=namespace)
    with pytest.raises(ApiError) as immutable:
        kube.patch(ObjectStore, "demo", {"spec": {"erasure": {"dataBlocks": 3}}},
                   namespace=namespace, patch_type=PatchType.MERGE, dry_run=True)
    assert immutable.value.status.code == 422
    assert "immutable" in immutable.value.status.message
    wait_until(lambda: _status(kube, namespace).get("phase") == "Paused", 30, "Paused")
    kube.delete(ObjectStore, "demo", namespace=namespace)
    wait_until(lambda: _gone(kube, ObjectStore, "demo", namespace), 30, "store deleted")


def test_two_operator_replicas_never_lead_at_once(operator: subprocess.Popen[bytes],
                                                  control_plane: ControlPlane) -> None:
    """Two candidates under the operator's RBAC: one leads; when it stops renewing, the
    other takes the Lease over after its duration, not before."""
    config = control_plane.service_account_kubeconfig(OPERATOR_NS, "kurastore-operator")

    async def scenario() -> tuple[bool, bool, float]:
        clients = [control_plane.async_client(config) for _ in range(2)]
        a, b = (LeaderElection(c, OPERATOR_NS, name, name="election-test", ttl_s=3)
                for c, name in zip(clients, ("replica-a", "replica-b"), strict=True))
        run_a = asyncio.create_task(a.run())
        await asyncio.wait_for(a.leading.wait(), 10)
        run_b = asyncio.create_task(b.run())
        await asyncio.sleep(2.5)
        both = b.leading.is_set()
        run_a.cancel()  # replica a dies without releasing the Lease
        stopped = time.monotonic()
        await asyncio.wait_for(b.leading.wait(), 15)
        took = time.monotonic() - stopped
        run_b.cancel()
        for client in clients:
            await client.close()
        return a.leading.is_set(), both, took

    a_led, both_led, takeover_s = asyncio.run(scenario())
    assert a_led and not both_led
    assert 1.0 <= takeover_s <= 10.0, takeover_s
