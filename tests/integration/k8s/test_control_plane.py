"""The k8s harness itself: a real API server and controllers, and a kubelet whose Pods are real
kurastore processes on their own loopback IPs, reachable directly and through a Service."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import pytest
from lightkube import ApiError, Client, codecs
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.apps_v1 import Deployment, StatefulSet
from lightkube.resources.core_v1 import ConfigMap, Pod, Secret
from lightkube.resources.rbac_authorization_v1 import RoleBinding
from support.kube import ControlPlane, wait_until
from support.kubelet import Kubelet

from kurastore.storage import PodClient, ShardId

pytestmark = pytest.mark.integration

SECRET = "k8s-harness-cluster-secret-0123456789"

STORAGE = """
apiVersion: v1
kind: Service
metadata: {name: pods}
spec:
  clusterIP: None
  selector: {app: pods}
  ports: [{name: api, port: 9101}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: pods}
spec:
  serviceName: pods
  replicas: 2
  selector: {matchLabels: {app: pods}}
  template:
    metadata: {labels: {app: pods}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: pod
        image: kurastore:test
        command: [kurastore, pod, --data, /data, --listen, "$(POD_IP):9101",
                  --secret-file, /etc/kura/secret, --pod-id, "$(POD_NAME)"]
        env:
        - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
        - {name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}
        ports: [{name: api, containerPort: 9101}]
        readinessProbe: {httpGet: {path: /readyz, port: api}, periodSeconds: 2}
        volumeMounts:
        - {name: data, mountPath: /data}
        - {name: secret, mountPath: /etc/kura, readOnly: true}
      volumes:
      - {name: secret, secret: {secretName: cluster-secret}}
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"""

WEB = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: python:3
        command: [python3, -m, http.server, --bind, "$(POD_IP)", --directory, /www, "8080"]
        env: [{name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /name, port: http}}
        volumeMounts: [{name: www, mountPath: /www}]
      volumes:
      - name: www
        downwardAPI: {items: [{path: name, fieldRef: {fieldPath: metadata.name}}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: web, port: 80, targetPort: http}]
"""


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=3) as r:
        return r.read()


def _ready(kube: Client, namespace: str, selector: str, count: int) -> list[Pod]:
    pods = [p for p in kube.list(Pod, namespace=namespace, labels={"app": selector})
            if p.metadata.deletionTimestamp is None and p.status and p.status.conditions
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions)]
    return pods if len(pods) == count else []


def _shard_roundtrip(url: str, write: bytes | None) -> bytes:
    async def go() -> bytes:
        async with PodClient(SECRET.encode(), connect_timeout_s=2, request_timeout_s=5) as c:
            shard = ShardId("d" * 32, "harness", 0)
            if write is not None:
                await c.put_shard(url, 7, shard, write)
            return await c.read_shard(url, 7, shard)

    return asyncio.run(go())


def test_statefulset_pods_are_processes(kube: Client, kubelet: Kubelet, namespace: str) -> None:
    kube.create(Secret(metadata=ObjectMeta(name="cluster-secret"),
                       stringData={"secret": SECRET}), namespace=namespace)
    for obj in codecs.load_all_yaml(STORAGE):
        kube.create(obj, namespace=namespace)
    pods = wait_until(lambda: _ready(kube, namespace, "pods", 2), 60, "2 ready storage pods")
    ips = {p.metadata.name: p.status.podIP for p in pods}
    assert len(set(ips.values())) == 2 and all(ip.startswith("127.") for ip in ips.values())
    for ip in ips.values():
        assert _get(f"http://{ip}:9101/healthz") == b"ok\n"
    url = f"http://{ips['pods-1']}:9101"
    data = b"shard bytes that must outlive the process " * 100
    assert _shard_roundtrip(url, data) == data
    volume = kubelet.volume_dir(namespace, "data-pods-1")
    assert any(volume.rglob("*")), "the shard is on the PVC's host directory"
    assert "pods-1" in kubelet.pod_log(namespace, "pods-1")

    # kill -9: restarted in place, same IP, the volume still holds the shard.
    kubelet.kill_pod(namespace, "pods-1")

    def restarted() -> bool:
        pod = kube.get(Pod, "pods-1", namespace=namespace)
        return (pod.status.containerStatuses[0].restartCount >= 1
                and bool(_ready(kube, namespace, "pods", 2)))

    wait_until(restarted, 30, "pods-1 restarted and ready")
    assert kube.get(Pod, "pods-1", namespace=namespace).status.podIP == ips["pods-1"]
    assert _shard_roundtrip(url, None) == data

    # Deleted: the StatefulSet controller recreates it with the same IP and claim.
    old_uid = kube.get(Pod, "pods-1", namespace=namespace).metadata.uid
    kube.delete(Pod, "pods-1", namespace=namespace)
    wait_until(lambda: _ready(kube, namespace, "pods", 2)
               and kube.get(Pod, "pods-1", namespace=namespace).metadata.uid != old_uid,
               40, "pods-1 recreated")
    assert kube.get(Pod, "pods-1", namespace=namespace).status.podIP == ips["pods-1"]
    assert kubelet.volume_dir(namespace, "data-pods-1") == volume
    assert _shard_roundtrip(url, None) == data

    # Scale in: the Pod goes away, and so does its process.
    kube.patch(StatefulSet, "pods", {"spec": {"replicas": 1}}, namespace=namespace)

    def gone() -> bool:
        try:
            kube.get(Pod, "pods-1", namespace=namespace)
            return False
        except ApiError as e:
            return e.status.code == 404

    wait_until(gone, 30, "pods-1 deleted")
    with pytest.raises(urllib.error.URLError):
        _get(f"{url}/healthz")
    assert _get(f"http://{ips['pods-0']}:9101/healthz") == b"ok\n"


def test_deployment_reached_through_service(kube: Client, kubelet: Kubelet,
                                            namespace: str) -> None:
    for obj in codecs.load_all_yaml(WEB):
        kube.create(obj, namespace=namespace)
    pods = wait_until(lambda: _ready(kube, namespace, "web", 2), 60, "2 ready web pods")
    host, port = kubelet.service_address(namespace, "web", 80)
    assert kubelet.resolve(f"web.{namespace}.svc.cluster.local", 80) == (host, port)
    seen: set[bytes] = set()
    wanted = {p.metadata.name.encode() for p in pods}
    # Round robin over the ready endpoints: both Pods answer through the one address.
    wait_until(lambda: seen.add(_get(f"http://{host}:{port}/name")) or seen == wanted,
               20, "both web pods answer through the Service", interval_s=0.05)

    # A Pod forced unready leaves the Service (and says so in its status); back again after.
    first, second = sorted(p.metadata.name for p in pods)
    kubelet.set_unready(namespace, first)
    wait_until(lambda: not _ready(kube, namespace, "web", 2), 10, f"{first} reported unready")
    answers = {_get(f"http://{host}:{port}/name") for _ in range(6)}
    assert answers == {second.encode()}
    kubelet.set_unready(namespace, first, unready=False)
    wait_until(lambda: _ready(kube, namespace, "web", 2), 10, f"{first} ready again")


def test_dry_run_and_identities(control_plane: ControlPlane, kube: Client,
                                namespace: str) -> None:
    # Server-side dry run: validated and defaulted by the server, never stored.
    made = kube.create(ConfigMap(metadata=ObjectMeta(name="dry"), data={"k": "v"}),
                       namespace=namespace, dry_run=True)
    assert made.metadata.uid
    with pytest.raises(ApiError) as missing:
        kube.get(ConfigMap, "dry", namespace=namespace)
    assert missing.value.status.code == 404
    bad = codecs.from_dict({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad"},
        "spec": {"replicas": -1, "selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "c", "image": "x"}]}}}})
    with pytest.raises(ApiError) as refused:
        kube.create(bad, namespace=namespace, dry_run=True)
    assert refused.value.status.code == 422
    with pytest.raises(ApiError):
        kube.get(Deployment, "bad", namespace=namespace)

    # RBAC applies to minted identities: a ServiceAccount may read only once bound.
    sa = control_plane.client(control_plane.service_account_kubeconfig(namespace, "operator"))
    with pytest.raises(ApiError) as denied:
        list(sa.list(Pod, namespace=namespace))
    assert denied.value.status.code == 403
    kube.create(codecs.from_dict({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "operator-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "operator",
                      "namespace": namespace}]}), namespace=namespace)
    assert kube.get(RoleBinding, "operator-view", namespace=namespace)
    wait_until(lambda: list(sa.list(Pod, namespace=namespace)) is not None, 10,
               "the bound ServiceAccount may list Pods")
    with pytest.raises(ApiError) as still_denied:
        sa.create(ConfigMap(metadata=ObjectMeta(name="x")), namespace=namespace)
    assert still_denied.value.status.code == 403
