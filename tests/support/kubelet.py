"""A "process kubelet": plays every node of the test control plane and runs Pods as processes.

It watches Pods through the API server (admin identity) and does what scheduler and kubelet
would: registers N Ready Nodes (zone labels `zone-<i % zones>`), binds unscheduled Pods once
their PVCs are Bound (honouring nodeSelector, spreading by pod count), and runs each
container as a local process (see `support.podspec` for env, `$(VAR)`, path and executable
rules). It also provisions a hostPath PersistentVolume for every pending PVC (one directory
per PVC *object*: a PVC deleted and recreated gets a new, empty volume).

Rules:
- Pod IPs are 127.<S>.x.y, S chosen per kubelet so parallel test sessions do not collide;
  one IP per namespace/name for the whole session, so a recreated StatefulSet Pod keeps it.
  Containers must listen on the Pod IP (`$(POD_IP)` from fieldRef status.podIP).
- Readiness: no readinessProbe means ready while running; httpGet/tcpSocket/exec probes run
  every min(periodSeconds, 1) s against the Pod IP. Liveness probes use their real timing.
- restartPolicy is honoured with a short backoff (0.5 s doubling to 5 s) and restartCount.
- Deletion: SIGTERM the process groups, wait min(grace, 10) s, SIGKILL, then delete the Pod
  with gracePeriodSeconds=0 (uid precondition).
- There is no cluster DNS and ClusterIPs do not route: `service_address()` gives a loopback
  forwarder over the Ready Pods matching the Service's selector (EndpointSlices cannot hold
  loopback addresses, so none are published), `resolve()` maps
  `<svc>.<ns>.svc[.cluster.local]` and `<pod>.<svc>.<ns>.svc...` names.
- Everything runs on a private asyncio loop in a daemon thread; the public methods are plain
  blocking calls usable from sync and async tests alike.
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import aiohttp

from support.kube import ControlPlane
from support.kubelet_pods import ApiError, Key, Obj, PodRuntime, _Api, _key, _now, _PodRun

__all__ = ["Kubelet"]

log = logging.getLogger("kurastore.tests.kubelet")


class Kubelet(PodRuntime):
    """See the module docstring. `start()` returns once the Nodes are registered."""

    def __init__(self, plane: ControlPlane, workdir: Path, nodes: int = 3, zones: int = 3,
                 subnet_octet: int | None = None, data_root: Path | None = None) -> None:
        self.plane, self.workdir = plane, workdir
        self.data_root = data_root or workdir  # Pod dirs (emptyDir, secrets) and PV dirs
        self.nodes = [f"node-{i}" for i in range(nodes)]
        self.zones = zones
        self.octet = subnet_octet if subnet_octet is not None else random.randint(16, 250)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="process-kubelet")
        self._objs: dict[Key, Obj | None] = {}
        self._runs: dict[Key, _PodRun] = {}
        self._ips: dict[Key, str] = {}
        self._dirty: set[Key] = set()
        self._workers: dict[Key, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._forwarders: dict[tuple[str, str, int | str], tuple[asyncio.Server, Any]] = {}
        self._rr = 0
        self._api: _Api | None = None
        self._probe_session: aiohttp.ClientSession | None = None
        self._handler: logging.Handler = logging.NullHandler()

    # -- public, blocking API ---------------------------------------------------------------

    def start(self) -> Kubelet:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._handler = logging.FileHandler(self.workdir / "kubelet.log")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(self._handler)
        log.setLevel(logging.INFO)
        self._thread.start()
        self._call(self._start(), timeout=60)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._shutdown(), timeout=60)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            log.removeHandler(self._handler)
            self._handler.close()

    def pod_ip(self, namespace: str, name: str) -> str:
        """The IP the Pod namespace/name has (or will get)."""
        return self._call(self._async(lambda: self._ip_for((namespace, name))))

    def kill_pod(self, namespace: str, name: str) -> None:
        """SIGKILL every container process of the Pod (its restartPolicy then applies)."""
        self._call(self._async(lambda: self._signal_run((namespace, name), signal.SIGKILL)))

    def set_unready(self, namespace: str, name: str, unready: bool = True) -> None:
        """Force the Pod's Ready condition False (until called with unready=False)."""
        self._call(self._set_unready((namespace, name), unready))

    def service_address(self, namespace: str, name: str, port: int | str) -> tuple[str, int]:
        """A loopback host:port that forwards to the Service's ready endpoints (round robin)."""
        return self._call(self._service_address(namespace, name, port))

    def resolve(self, host: str, port: int) -> tuple[str, int]:
        """Cluster DNS names to reachable addresses; anything else is returned unchanged."""
        parts = host.rstrip(".").removesuffix(".cluster.local").split(".")
        if len(parts) == 3 and parts[2] == "svc":
            return self.service_address(parts[1], parts[0], port)
        if len(parts) == 4 and parts[3] == "svc":
            return self.pod_ip(parts[2], parts[0]), port
        return host, port

    def pod_log(self, namespace: str, name: str, container: str | None = None) -> str:
        """The output of the Pod's (first, or named) container, all incarnations."""
        pattern = f"{namespace}_{name}_*_{container or '*'}.log"
        logs = sorted((self.workdir / "logs").glob(pattern), key=lambda p: p.stat().st_mtime)
        return "".join(p.read_text(errors="replace") for p in logs)

    def volume_dir(self, namespace: str, claim: str) -> Path:
        """The host directory behind PVC namespace/claim (its PV's hostPath)."""
        return self._call(self._volume_dir(namespace, claim))

    # -- plumbing -----------------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @staticmethod
    async def _async(fn: Any) -> Any:
        return fn()

    @property
    def api(self) -> _Api:
        assert self._api is not None
        return self._api

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self._loop.create_task(coro)
        self._tasks.append(task)
        task.add_done_callback(self._tasks.remove)
        return task

    async def _start(self) -> None:
        self._api = _Api(self.plane)
        self._probe_session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=False, force_close=True))
        for name in self.nodes:
            await self._register_node(name)
        self._spawn(self._watch_pods())
        self._spawn(self._ticker())

    async def _shutdown(self) -> None:
        for server, _ in self._forwarders.values():
            server.close()
        runs = list(self._runs.values())
        await asyncio.gather(*(self._kill_run(r, grace_s=2.0) for r in runs))
        for task in [*self._tasks, *self._workers.values()]:
            task.cancel()
        await asyncio.sleep(0)
        await self.api.session.close()
        if self._probe_session is not None:
            await self._probe_session.close()

    async def _register_node(self, name: str) -> None:
        labels = dict(self._node_labels())[name]
        try:
            await self.api.call("POST", "/api/v1/nodes", {
                "apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}})
        except ApiError as e:
            if e.status != 409:
                raise
        resources = {"cpu": "8", "memory": "32Gi", "pods": "110",
                     "ephemeral-storage": "100Gi"}
        status = {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                  "lastHeartbeatTime": _now(), "lastTransitionTime": _now(),
                                  "message": "process kubelet"}],
                  "capacity": resources, "allocatable": resources,
                  "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                {"type": "Hostname", "address": name}],
                  "nodeInfo": {"kubeletVersion": "v1.36.3", "kubeProxyVersion": "",
                               "operatingSystem": "linux", "architecture": "amd64",
                               "containerRuntimeVersion": "process://1", "kernelVersion": "",
                               "osImage": "", "machineID": "", "systemUUID": "",
                               "bootID": ""}}
        await self.api.call("PATCH", f"/api/v1/nodes/{name}/status", {"status": status},
                            ctype="application/merge-patch+json")

    async def _watch_pods(self) -> None:
        while True:
            try:
                listing = await self.api.call("GET", "/api/v1/pods")
                assert listing is not None
                seen = {_key(p): p for p in listing["items"]}
                for k in set(self._objs) - set(seen):
                    self._set(k, None)
                for k, p in seen.items():
                    self._set(k, p)
                rv = listing["metadata"]["resourceVersion"]
                async for ev in self.api.watch("/api/v1/pods", rv):
                    if ev["type"] == "ERROR":
                        break
                    if ev["type"] != "BOOKMARK":
                        obj = ev["object"]
                        self._set(_key(obj), None if ev["type"] == "DELETED" else obj)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pod watch failed; listing again")
                await asyncio.sleep(0.5)

    async def _ticker(self) -> None:
        """Retry whatever waits on something (PVCs, Secrets) and provision volumes."""
        while True:
            await asyncio.sleep(1.0)
            try:
                await self._provision_volumes()
            except Exception:
                log.exception("volume provisioning failed")
            for k in list(self._objs):
                self._kick(k)

    def _set(self, k: Key, obj: Obj | None) -> None:
        self._objs[k] = obj
        self._kick(k)

    def _kick(self, k: Key) -> None:
        self._dirty.add(k)
        if k not in self._workers:
            self._workers[k] = self._loop.create_task(self._worker(k))

    async def _worker(self, k: Key) -> None:
        try:
            while k in self._dirty:
                self._dirty.discard(k)
                try:
                    await self._sync(k, self._objs.get(k))
                except Exception:
                    log.exception("sync of pod %s/%s failed", *k)
        finally:
            self._workers.pop(k, None)

    def _ip_for(self, k: Key) -> str:
        if k not in self._ips:
            n = len(self._ips)
            self._ips[k] = f"127.{self.octet}.{n // 250}.{n % 250 + 2}"
        return self._ips[k]


    # -- Services ------------------------------------------------------------------------------

    async def _service_address(self, ns: str, name: str, port: int | str) -> tuple[str, int]:
        key = (ns, name, port)
        if key not in self._forwarders:
            svc = await self.api.call("GET", f"/api/v1/namespaces/{ns}/services/{name}")
            if svc is None:
                raise KeyError(f"no Service {ns}/{name}")
            if not any(port in (p.get("port"), p.get("name")) for p in svc["spec"]["ports"]):
                raise KeyError(f"Service {ns}/{name} has no port {port!r}")

            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await self._forward(ns, name, port, reader, writer)

            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            self._forwarders[key] = (server, server.sockets[0].getsockname()[:2])
        return self._forwarders[key][1]

    async def _endpoints(self, ns: str, name: str, port: int | str) -> list[tuple[str, int]]:
        """Ready Pods matching the Service's selector, with the target port resolved.

        Not from EndpointSlices: the API server refuses loopback addresses in them, so the
        endpointslice controller cannot publish our Pod IPs (its log shows those errors).
        """
        svc = await self.api.call("GET", f"/api/v1/namespaces/{ns}/services/{name}")
        selector = (svc or {}).get("spec", {}).get("selector")
        if not selector:
            return []
        sp = next(p for p in svc["spec"]["ports"] if port in (p.get("port"), p.get("name")))
        target = sp.get("targetPort", sp["port"])
        found = []
        for run in self._runs.values():
            labels = run.pod["metadata"].get("labels") or {}
            if (run.key[0] != ns or run.stopping or run.forced_unready
                    or not selector.items() <= labels.items()
                    or not all(c.ready for c in run.containers)):
                continue
            if isinstance(target, int) or str(target).isdigit():
                found.append((run.ip, int(target)))
                continue
            for c in run.containers:
                for cp in c.spec.get("ports", []):
                    if cp.get("name") == target:
                        found.append((run.ip, int(cp["containerPort"])))
        return sorted(found)

    async def _forward(self, ns: str, name: str, port: int | str, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        try:
            backends = await self._endpoints(ns, name, port)
            self._rr += 1
            order = backends[self._rr % len(backends):] + backends[:self._rr % len(backends)] \
                if backends else []
            for addr in order:  # a dead backend is skipped, as kube-proxy's userspace mode did
                try:
                    up_r, up_w = await asyncio.wait_for(asyncio.open_connection(*addr), 3)
                    break
                except (OSError, TimeoutError):
                    continue
            else:
                log.warning("service %s/%s: no reachable endpoint", ns, name)
                return
            try:
                await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))
            finally:
                up_w.close()
        except Exception:
            log.exception("forwarding for %s/%s failed", ns, name)
        finally:
            writer.close()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while chunk := await src.read(1 << 16):
            dst.write(chunk)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
    except (ConnectionError, OSError):
        dst.close()
