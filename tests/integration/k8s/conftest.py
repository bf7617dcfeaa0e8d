"""The k8s test tier: one real control plane and one process kubelet for the session.

Fixtures:
- `control_plane`: `support.kube.ControlPlane` (etcd, kube-apiserver, kube-controller-manager);
  binaries from KURASTORE_K8S_BIN, built by tools/k8s-testbin/build.sh when unset.
- `kubelet`: `support.kubelet.Kubelet` with 4 nodes in 2 zones; Pods become processes.
- `kube`: a lightkube `Client` with the admin identity.
- `namespace`: a fresh Namespace per test, deleted afterwards.
A failing test gets the tail of every component's log (and the kubelet's) in its report.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from lightkube import Client
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.core_v1 import Namespace
from support.kube import ControlPlane
from support.kubelet import Kubelet

_active: dict[str, object] = {}
_names = itertools.count()


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane.start(tmp_path_factory.mktemp("k8s"))
    _active["plane"] = plane
    try:
        yield plane
    finally:
        _active.pop("plane", None)
        plane.stop()


@pytest.fixture(scope="session")
def kubelet(control_plane: ControlPlane,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kubelet]:
    # Pod volumes live in memory: storage pods fsync, and the disk is shared.
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    data = Path(tempfile.mkdtemp(prefix="kurastore-kubelet-", dir=shm))
    node = Kubelet(control_plane, tmp_path_factory.mktemp("kubelet"), nodes=4, zones=2,
                   data_root=data).start()
    _active["kubelet"] = node
    try:
        yield node
    finally:
        _active.pop("kubelet", None)
        node.stop()
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Iterator[Client]:
    yield control_plane.client()


@pytest.fixture
def namespace(kube: Client) -> Iterator[str]:
    name = f"t{next(_names)}-{os.getpid()}"
    kube.create(Namespace(metadata=ObjectMeta(name=name)))
    try:
        yield name
    finally:
        kube.delete(Namespace, name)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    plane = _active.get("plane")
    if isinstance(plane, ControlPlane):
        for name, text in plane.logs(40).items():
            report.sections.append((f"{name} log (tail)", text))
    node = _active.get("kubelet")
    if isinstance(node, Kubelet):
        path = node.workdir / "kubelet.log"
        if path.exists():
            tail = "\n".join(path.read_text(errors="replace").splitlines()[-60:])
            report.sections.append(("process kubelet log (tail)", tail))
