"""A real Kubernetes control plane for tests: etcd, kube-apiserver, kube-controller-manager.

The binaries come from `tools/k8s-testbin/build.sh` (built from the Go module proxy and
cached); `KURASTORE_K8S_BIN` names their directory, and when it is unset the build script
is run here, so a missing build fails loudly instead of skipping anything.

Rules:
- Loopback only, free ports; etcd keeps its data on /dev/shm with --unsafe-no-fsync.
- RBAC is on. The admin identity is in `system:masters`; `kubeconfig(user, groups)` mints a
  client certificate for any other identity (e.g. a ServiceAccount's user name) so code can
  run under the permissions our manifests grant it.
- No kubelet, scheduler or node-lifecycle controller runs: `support.kubelet` plays the nodes.
- Teardown sends SIGTERM, then SIGKILL after 10 s; `logs()` gives each component's tail for
  failure reports.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import yaml
from cryptography.hazmat.primitives import serialization
from lightkube import AsyncClient, Client, KubeConfig

from kurastore.operator.platforms.ports import free_port
from support.certs import CertificateAuthority, new_key, write_key

__all__ = ["ADMIN_USER", "CONTROLLERS", "ControlPlane", "ensure_binaries", "free_port",
           "wait_until"]

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tools" / "k8s-testbin" / "build.sh"
ADMIN_USER = "kurastore-admin"
SERVICE_CIDR = "10.0.0.0/24"
# What the Pods and objects of our tests need. Left out on purpose: node-lifecycle (it would
# taint and evict Pods of nodes that renew no Lease) and endpointslice (the API server refuses
# the loopback Pod IPs in EndpointSlices, so it would only log errors; the process kubelet
# routes Services itself).
CONTROLLERS = (
    "statefulset-controller", "deployment-controller", "replicaset-controller",
    "garbage-collector-controller", "namespace-controller", "disruption-controller",
    "pod-garbage-collector-controller",
    "persistentvolume-binder-controller", "persistentvolume-protection-controller",
    "persistentvolumeclaim-protection-controller", "serviceaccount-controller",
    "clusterrole-aggregation-controller",
)


def wait_until(check: Callable[[], T], timeout_s: float = 60.0, what: str = "condition",
               interval_s: float = 0.2) -> T:
    """Poll check() until it returns something truthy (returned); exceptions count as no."""
    deadline = time.monotonic() + timeout_s
    last: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as e:  # the API may not have caught up yet
            last = e
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not true within {timeout_s:.0f} s (last error: {last!r})")
        time.sleep(interval_s)


def ensure_binaries() -> Path:
    """The directory holding kube-apiserver, kube-controller-manager and etcd (built if need be)."""
    given = os.environ.get("KURASTORE_K8S_BIN")
    if given:
        path = Path(given)
    else:
        # Cold builds take 10-25 min; the script prints only the directory on stdout.
        done = subprocess.run([str(BUILD_SCRIPT)], stdout=subprocess.PIPE, text=True,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{BUILD_SCRIPT} failed (exit {done.returncode})")
        path = Path(done.stdout.strip().splitlines()[-1])
    missing = [b for b in ("etcd", "kube-apiserver", "kube-controller-manager")
               if not (path / b).is_file()]
    if missing:
        raise RuntimeError(f"{path} lacks {', '.join(missing)}: run {BUILD_SCRIPT}")
    return path


# -- the control plane ----------------------------------------------------------------------


@dataclass
class _Component:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on loopback; see the module docstring."""

    workdir: Path
    bin_dir: Path
    api_port: int = field(default_factory=free_port)
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    components: list[_Component] = field(default_factory=list)
    started_s: float = 0.0  # how long start() took
    _ca: CertificateAuthority | None = None
    _shm: Path | None = None
    _certs: dict[tuple[str, tuple[str, ...]], tuple[Path, Path]] = field(default_factory=dict)

    @property
    def server_url(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def ca_path(self) -> Path:
        return self.workdir / "ca.crt"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.kubeconfig(ADMIN_USER, ("system:masters",))

    @classmethod
    def start(cls, workdir: Path, bin_dir: Path | None = None,
              timeout_s: float = 180.0) -> ControlPlane:
        """Start everything and return once the API serves and the controllers run."""
        workdir.mkdir(parents=True, exist_ok=True)
        plane = cls(workdir=workdir, bin_dir=bin_dir or ensure_binaries())
        began = time.monotonic()
        try:
            plane._start(time.monotonic() + timeout_s)
        except BaseException:
            logs = plane.logs()
            plane.stop()
            detail = "\n".join(f"--- {n} ---\n{t}" for n, t in logs.items())
            raise RuntimeError(f"control plane failed to start\n{detail}") from None
        plane.started_s = time.monotonic() - began
        return plane

    def _start(self, deadline: float) -> None:
        self._write_certs()
        self._shm = Path(tempfile.mkdtemp(prefix="kurastore-etcd-",
                                          dir="/dev/shm" if Path("/dev/shm").is_dir() else None))
        etcd = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        self._spawn("etcd", [
            "--name=t", f"--data-dir={self._shm}", f"--listen-client-urls={etcd}",
            f"--advertise-client-urls={etcd}", f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}", f"--initial-cluster=t={peer}",
            "--unsafe-no-fsync", "--log-level=warn", "--quota-backend-bytes=2147483648",
        ])
        self._wait("etcd", deadline, lambda: _http_ok(f"{etcd}/health", None))
        w = self.workdir
        self._spawn("kube-apiserver", [
            f"--etcd-servers={etcd}", "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1", f"--secure-port={self.api_port}",
            f"--tls-cert-file={w / 'serving.crt'}", f"--tls-private-key-file={w / 'serving.key'}",
            f"--client-ca-file={self.ca_path}", f"--cert-dir={w / 'certs'}",
            f"--service-account-issuer={self.server_url}",
            f"--service-account-key-file={w / 'sa.pub'}",
            f"--service-account-signing-key-file={w / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--authorization-mode=RBAC",
            "--allow-privileged=true", "--disable-admission-plugins=ServiceAccount",
            "--profiling=false", "--v=1", "--endpoint-reconciler-type=none",
        ])
        admin = self.admin_kubeconfig
        ctx = self.ssl_context()
        self._wait("kube-apiserver", deadline,
                   lambda: _http_ok(f"{self.server_url}/readyz", ctx))
        self._spawn("kube-controller-manager", [
            f"--kubeconfig={admin}", "--leader-elect=false", "--secure-port=0",
            f"--controllers={','.join(CONTROLLERS)}", "--pvclaimbinder-sync-period=1s",
            "--concurrent-statefulset-syncs=5", "--v=1",
        ])
        # The serviceaccount controller creating `default/default` proves the KCM runs.
        url = f"{self.server_url}/api/v1/namespaces/default/serviceaccounts/default"
        self._wait("kube-controller-manager", deadline, lambda: _http_ok(url, ctx))

    def _write_certs(self) -> None:
        self._ca = CertificateAuthority.create()
        self.ca_path.write_bytes(self._ca.cert.public_bytes(serialization.Encoding.PEM))
        self._ca.issue(self.workdir / "serving.crt", self.workdir / "serving.key",
                       "kube-apiserver", server=True)
        sa = new_key()
        write_key(sa, self.workdir / "sa.key")
        (self.workdir / "sa.pub").write_bytes(sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def _spawn(self, name: str, args: list[str]) -> None:
        log = self.workdir / f"{name}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen([str(self.bin_dir / name), *args], stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.components.append(_Component(name, proc, log))

    def _wait(self, name: str, deadline: float, check) -> None:
        comp = next(c for c in self.components if c.name == name)
        while time.monotonic() < deadline:
            if comp.process.poll() is not None:
                raise RuntimeError(f"{name} exited with {comp.process.returncode}")
            if check():
                return
            time.sleep(0.1)
        raise TimeoutError(f"{name} not ready in time")

    # -- identities and clients ---------------------------------------------------------------

    def kubeconfig(self, user: str = ADMIN_USER, groups: Sequence[str] = ("system:masters",),
                   namespace: str = "default") -> Path:
        """A kubeconfig whose client certificate says CN=user, O=groups (one per identity)."""
        ident = (user, tuple(groups))
        if ident not in self._certs:
            assert self._ca is not None, "start() the control plane first"
            slug = "".join(c if c.isalnum() else "-" for c in user)[:60]
            stem = self.workdir / f"user-{len(self._certs)}-{slug}"
            cert, key = stem.with_suffix(".crt"), stem.with_suffix(".key")
            self._ca.issue(cert, key, user, groups)
            self._certs[ident] = (cert, key)
        cert, key = self._certs[ident]
        path = cert.with_name(f"{cert.stem}-{namespace}.kubeconfig")
        if not path.exists():
            path.write_text(yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "test",
                "clusters": [{"name": "test", "cluster": {
                    "server": self.server_url, "certificate-authority": str(self.ca_path)}}],
                "users": [{"name": user, "user": {
                    "client-certificate": str(cert), "client-key": str(key)}}],
                "contexts": [{"name": "test", "context": {
                    "cluster": "test", "user": user, "namespace": namespace}}],
            }))
        return path

    def service_account_kubeconfig(self, namespace: str, name: str) -> Path:
        """Act as ServiceAccount namespace/name: RBAC matches the user name and groups."""
        return self.kubeconfig(
            f"system:serviceaccount:{namespace}:{name}",
            ("system:serviceaccounts", f"system:serviceaccounts:{namespace}"),
            namespace=namespace)

    def client(self, kubeconfig: Path | None = None, field_manager: str = "kurastore-tests",
               ) -> Client:
        """A lightkube Client for kubeconfig (the admin's by default)."""
        config = KubeConfig.from_file(kubeconfig or self.admin_kubeconfig)
        return Client(config, field_manager=field_manager, trust_env=False)

    def async_client(self, kubeconfig: Path | None = None,
                     field_manager: str = "kurastore-tests") -> AsyncClient:
        config = KubeConfig.from_file(kubeconfig or self.admin_kubeconfig)
        return AsyncClient(config, field_manager=field_manager, trust_env=False)

    def ssl_context(self, user: str = ADMIN_USER,
                    groups: Sequence[str] = ("system:masters",)) -> ssl.SSLContext:
        """A client TLS context for the identity (trusting the test CA)."""
        self.kubeconfig(user, groups)
        cert, key = self._certs[(user, tuple(groups))]
        ctx = ssl.create_default_context(cafile=str(self.ca_path))
        ctx.load_cert_chain(str(cert), str(key))
        return ctx

    # -- teardown and diagnostics -------------------------------------------------------------

    def logs(self, lines: int = 60) -> dict[str, str]:
        """Each component's last log lines (for failure reports)."""
        out = {}
        for comp in self.components:
            try:
                text = comp.log.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                text = []
            state = comp.process.poll()
            out[comp.name] = (f"[exited {state}]\n" if state is not None else "") + "\n".join(text)
        return out

    def stop(self) -> None:
        """SIGTERM each component (controllers first), SIGKILL after 10 s; drop etcd's data."""
        for comp in reversed(self.components):
            _terminate(comp.process, 10.0)
        if self._shm is not None:
            shutil.rmtree(self._shm, ignore_errors=True)
            self._shm = None


def _terminate(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _http_ok(url: str, context: ssl.SSLContext | None) -> bool:
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=context))
        with opener.open(url, timeout=2) as r:
            body = r.read()
            if url.endswith("/health"):
                return json.loads(body).get("health") == "true"
            return r.status == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False
