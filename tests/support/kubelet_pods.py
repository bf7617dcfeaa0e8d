"""The Pod half of the process kubelet (`support.kubelet`): scheduling, volumes, processes,
probes, status and graceful deletion, plus the small REST client both halves use.

Rules: every method runs on the kubelet's own event loop; one worker per Pod key at a time
(`_sync`), so a Pod is never started twice; status goes out as a strategic-merge PATCH with
the Pod's uid as precondition, and only when it changed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp

from support import podspec
from support.kube import ControlPlane

log = logging.getLogger("kurastore.tests.kubelet")
Key = tuple[str, str]
Obj = dict[str, Any]
VOLUME_LABEL = "kurastore.test/process-kubelet"
MAX_GRACE_S = 10.0


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _key(obj: Obj) -> Key:
    return obj["metadata"]["namespace"], obj["metadata"]["name"]


class ApiError(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body[:300]}")
        self.status = status


class _Api:
    """Just enough REST: JSON in and out, watch streams, errors as ApiError."""

    def __init__(self, plane: ControlPlane) -> None:
        ctx = plane.ssl_context()  # the admin identity
        self.base = plane.server_url
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=32))

    async def call(self, method: str, path: str, body: Obj | None = None,
                   ctype: str = "application/json", **params: str) -> Obj | None:
        """The decoded reply; None for 404."""
        data = None if body is None else json.dumps(body)
        async with self.session.request(method, self.base + path, data=data, params=params,
                                        headers={"Content-Type": ctype}) as r:
            text = await r.text()
            if r.status == 404:
                return None
            if r.status >= 300:
                raise ApiError(r.status, text)
            return json.loads(text) if text else {}

    async def watch(self, path: str, rv: str) -> AsyncIterator[Obj]:
        params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true",
                  "timeoutSeconds": "240"}
        timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
        async with self.session.get(self.base + path, params=params, timeout=timeout) as r:
            if r.status != 200:
                raise ApiError(r.status, await r.text())
            buf = b""
            async for chunk in r.content.iter_any():
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)


@dataclass
class _Container:
    spec: Obj
    argv: list[str]
    env: dict[str, str]
    cwd: str
    log: Path
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    state: Obj = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: Obj = field(default_factory=dict)
    ready: bool = False
    done: bool = False
    since: float = 0.0  # monotonic start of the current process

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None


@dataclass
class _PodRun:
    key: Key
    uid: str
    ip: str
    pod: Obj
    root: Path
    containers: list[_Container]
    started: str = field(default_factory=_now)
    stopping: bool = False
    forced_unready: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    cond_times: dict[str, tuple[str, str]] = field(default_factory=dict)
    pushed: Obj | None = None




class PodRuntime:
    """Mixin for `Kubelet`: everything that happens to one Pod. Needs `api`, `workdir`,
    `nodes`, `_objs`, `_runs`, `_ip_for`, `_spawn`, `_probe_session` from the host class."""

    api: _Api
    workdir: Path
    data_root: Path
    nodes: list[str]
    zones: int
    plane: ControlPlane
    _objs: dict[Key, Obj | None]
    _runs: dict[Key, _PodRun]
    _probe_session: aiohttp.ClientSession | None

    def _ip_for(self, k: Key) -> str:
        raise NotImplementedError

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        raise NotImplementedError

    # -- the per-Pod state machine ----------------------------------------------------------

    async def _sync(self, k: Key, pod: Obj | None) -> None:
        run = self._runs.get(k)
        if pod is None:
            if run is not None:
                await self._kill_run(run, grace_s=0)
            self._objs.pop(k, None)
            return
        meta, spec = pod["metadata"], pod["spec"]
        if run is not None and run.uid != meta["uid"]:
            await self._kill_run(run, grace_s=0)  # an older Pod of the same name
            run = None
        if run is not None:
            run.pod = pod
        if meta.get("deletionTimestamp"):
            if not spec.get("nodeName"):
                return
            if run is None:
                await self._finish_delete(k, meta["uid"])
            elif not run.stopping:
                grace = meta.get("deletionGracePeriodSeconds")
                if grace is None:
                    grace = spec.get("terminationGracePeriodSeconds", 30)
                self._spawn(self._terminate(run, min(float(grace), MAX_GRACE_S)))
            return
        if not spec.get("nodeName"):
            await self._schedule(pod)
        elif (run is None and spec["nodeName"] in self.nodes
              and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")):
            await self._start_pod(k, pod)

    async def _claims_bound(self, pod: Obj) -> bool:
        ns = pod["metadata"]["namespace"]
        for v in pod["spec"].get("volumes", []):
            if "persistentVolumeClaim" in v:
                name = v["persistentVolumeClaim"]["claimName"]
                pvc = await self.api.call(
                    "GET", f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{name}")
                if pvc is None or pvc.get("status", {}).get("phase") != "Bound":
                    return False
        return True

    async def _schedule(self, pod: Obj) -> None:
        if not await self._claims_bound(pod):
            return
        selector = pod["spec"].get("nodeSelector") or {}
        nodes = [n for n in self._node_labels() if selector.items() <= n[1].items()]
        if not nodes:
            return
        load = {name: 0 for name, _ in nodes}
        for other in self._objs.values():
            node = (other or {}).get("spec", {}).get("nodeName")
            if node in load and other.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
                load[node] += 1
        target = min(load, key=lambda n: (load[n], self.nodes.index(n)))
        ns, name = _key(pod)
        binding = {"apiVersion": "v1", "kind": "Binding",
                   "metadata": {"name": name, "uid": pod["metadata"]["uid"]},
                   "target": {"apiVersion": "v1", "kind": "Node", "name": target}}
        try:
            await self.api.call("POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", binding)
            log.info("bound %s/%s to %s", ns, name, target)
            if self._objs.get((ns, name)) is pod:  # count it before the watch says so
                self._objs[(ns, name)] = {**pod, "spec": {**pod["spec"], "nodeName": target}}
        except ApiError as e:
            if e.status != 409:
                raise

    def _node_labels(self) -> list[tuple[str, dict[str, str]]]:
        return [(n, {"kubernetes.io/hostname": n, "kubernetes.io/os": "linux",
                     "kubernetes.io/arch": "amd64",
                     "topology.kubernetes.io/zone": f"zone-{i % self.zones}"})
                for i, n in enumerate(self.nodes)]

    # -- starting ---------------------------------------------------------------------------

    async def _start_pod(self, k: Key, pod: Obj) -> None:
        ns, name = k
        uid = pod["metadata"]["uid"]
        ip = self._ip_for(k)
        refs: dict[tuple[str, str], Obj | None] = {}
        for kind, ref in podspec.referenced_objects(pod):
            plural = "secrets" if kind == "Secret" else "configmaps"
            refs[(kind, ref)] = await self.api.call(
                "GET", f"/api/v1/namespaces/{ns}/{plural}/{ref}")
        root = self.data_root / "pods" / f"{ns}_{name}_{uid[:8]}"
        try:
            dirs = await self._volume_dirs(pod, root, refs, ip)
            containers = [self._container(pod, c, refs, ip, dirs, root)
                          for c in pod["spec"]["containers"]]
            inits = [self._container(pod, c, refs, ip, dirs, root)
                     for c in pod["spec"].get("initContainers", [])]
        except (podspec.NotYet, ValueError) as e:
            await self._pending(pod, str(e))
            return
        run = _PodRun(k, uid, ip, pod, root, containers)
        self._runs[k] = run
        log.info("starting %s/%s on %s", ns, name, ip)
        run.tasks.append(self._spawn(self._run_pod(run, inits)))

    async def _volume_dirs(self, pod: Obj, root: Path, refs: Any, ip: str) -> dict[str, Path]:
        dirs: dict[str, Path] = {}
        ns = pod["metadata"]["namespace"]
        for v in pod["spec"].get("volumes", []):
            name = v["name"]
            if "persistentVolumeClaim" in v:
                dirs[name] = await self._volume_dir(ns, v["persistentVolumeClaim"]["claimName"])
            elif "hostPath" in v:
                dirs[name] = Path(v["hostPath"]["path"])
            elif "emptyDir" in v:
                dirs[name] = root / "volumes" / name
                dirs[name].mkdir(parents=True, exist_ok=True)
            elif {"secret", "configMap", "downwardAPI", "projected"} & v.keys():
                dirs[name] = root / "volumes" / name
                for rel, content in podspec.volume_files(v, pod, refs, ip).items():
                    path = dirs[name] / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(content)
                dirs[name].mkdir(parents=True, exist_ok=True)
            else:
                raise ValueError(f"volume {name}: type not supported by the process kubelet")
        return dirs

    async def _volume_dir(self, ns: str, claim: str) -> Path:
        pvc = await self.api.call("GET", f"/api/v1/namespaces/{ns}/persistentvolumeclaims/{claim}")
        volume = (pvc or {}).get("spec", {}).get("volumeName")
        pv = volume and await self.api.call("GET", f"/api/v1/persistentvolumes/{volume}")
        if not pv or "hostPath" not in pv["spec"]:
            raise podspec.NotYet(f"PVC {ns}/{claim} is not bound to a hostPath volume")
        return Path(pv["spec"]["hostPath"]["path"])

    def _container(self, pod: Obj, c: Obj, refs: Any, ip: str, dirs: dict[str, Path],
                   root: Path) -> _Container:
        ns, name = _key(pod)
        mounts = []
        for m in c.get("volumeMounts", []):
            host = dirs[m["name"]] / m.get("subPath", "")
            host.mkdir(parents=True, exist_ok=True)
            mounts.append((m["mountPath"], str(host)))
        env = podspec.container_env(pod, c, refs, ip)
        env = {k: podspec.rewrite_path(v, mounts) for k, v in env.items()}
        argv = podspec.container_argv(c, env, mounts)
        base = {k: os.environ[k] for k in ("PATH", "HOME", "LANG", "TZ") if k in os.environ}
        base.update(HOSTNAME=pod["spec"].get("hostname") or name,
                    KUBERNETES_SERVICE_HOST="127.0.0.1",
                    KUBERNETES_SERVICE_PORT=str(self.plane.api_port), PYTHONSAFEPATH="1")
        base.update(env)
        cwd = podspec.rewrite_path(c.get("workingDir", ""), mounts) or str(root)
        Path(cwd).mkdir(parents=True, exist_ok=True)
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        uid = pod["metadata"]["uid"][:8]
        return _Container(c, argv, base, cwd, logs / f"{ns}_{name}_{uid}_{c['name']}.log")

    async def _run_pod(self, run: _PodRun, inits: list[_Container]) -> None:
        for init in inits:
            backoff = 0.5
            while not run.stopping:
                rc = await self._exec(init)
                if rc == 0:
                    break
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        for c in run.containers:
            run.tasks.append(self._spawn(self._supervise(run, c)))
            run.tasks.append(self._spawn(self._probe_loop(run, c, "readinessProbe")))
            run.tasks.append(self._spawn(self._probe_loop(run, c, "livenessProbe")))

    async def _exec(self, c: _Container) -> int:
        with open(c.log, "ab") as out:  # noqa: ASYNC230 (a local file, opened once per start)
            c.process = await asyncio.create_subprocess_exec(
                *c.argv, cwd=c.cwd, env=c.env, stdout=out, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True)
        return await c.process.wait()

    async def _supervise(self, run: _PodRun, c: _Container) -> None:
        backoff = 0.5
        policy = run.pod["spec"].get("restartPolicy", "Always")
        while not run.stopping:
            began, started = time.monotonic(), _now()
            c.since = began
            c.state = {"running": {"startedAt": started}}
            c.ready = "readinessProbe" not in c.spec
            waiter = asyncio.ensure_future(self._exec(c))
            await asyncio.sleep(0.05)  # let the process exist before reporting it
            if run.stopping and c.process is not None:
                _killpg(c.process.pid, signal.SIGKILL)  # started while the Pod was stopping
            await self._push_status(run)
            rc = await waiter
            c.ready = False
            code = rc if rc >= 0 else 128 - rc
            term = {"terminated": {"exitCode": code, "reason": "Completed" if rc == 0 else "Error",
                                   "startedAt": started, "finishedAt": _now()}}
            log.info("%s/%s container %s exited %s", *run.key, c.name, rc)
            if run.stopping:
                c.state = term
                return
            if policy == "Never" or (policy == "OnFailure" and rc == 0):
                c.state, c.done = term, True
                await self._push_status(run)
                return
            c.last_state, c.restarts = term, c.restarts + 1
            c.state = {"waiting": {"reason": "CrashLoopBackOff"}}
            await self._push_status(run)
            if time.monotonic() - began > 10:
                backoff = 0.5
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _probe_loop(self, run: _PodRun, c: _Container, kind: str) -> None:
        probe = c.spec.get(kind)
        if not probe:
            return
        live = kind == "livenessProbe"
        period = float(probe.get("periodSeconds", 10))
        period = period if live else min(period, 1.0)
        ok_needed, fail_needed = probe.get("successThreshold", 1), probe.get("failureThreshold", 3)
        oks = fails = 0
        while not run.stopping:
            # Readiness is probed fast until ready: only the test's wall clock changes.
            await asyncio.sleep(period if live or c.ready else 0.2)
            if not c.running:
                oks = fails = 0
                continue
            if live and time.monotonic() - c.since < probe.get("initialDelaySeconds", 0):
                continue
            ok = await self._probe(run, c, probe)
            oks, fails = (oks + 1, 0) if ok else (0, fails + 1)
            if live:
                if fails >= fail_needed and c.process is not None:
                    log.info("%s/%s liveness failed: killing %s", *run.key, c.name)
                    _killpg(c.process.pid, signal.SIGKILL)
                    fails = 0
            elif (oks >= ok_needed) != c.ready and (ok or fails >= fail_needed):
                c.ready = ok
                await self._push_status(run)

    async def _probe(self, run: _PodRun, c: _Container, probe: Obj) -> bool:
        timeout = float(probe.get("timeoutSeconds", 1))
        try:
            if "httpGet" in probe:
                h = probe["httpGet"]
                url = (f"{h.get('scheme', 'HTTP').lower()}://{h.get('host') or run.ip}:"
                       f"{self._port(c, h['port'])}{h.get('path', '/')}")
                headers = {x["name"]: x["value"] for x in h.get("httpHeaders", [])}
                assert self._probe_session is not None
                async with self._probe_session.get(
                        url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                    return 200 <= r.status < 400
            if "tcpSocket" in probe:
                t = probe["tcpSocket"]
                _, w = await asyncio.wait_for(asyncio.open_connection(
                    t.get("host") or run.ip, self._port(c, t["port"])), timeout)
                w.close()
                return True
            if "exec" in probe:
                argv = podspec.container_argv({"command": probe["exec"]["command"]}, c.env, [])
                proc = await asyncio.create_subprocess_exec(
                    *argv, env=c.env, cwd=c.cwd, stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.DEVNULL)
                return await asyncio.wait_for(proc.wait(), timeout + 5) == 0
        except (OSError, TimeoutError, aiohttp.ClientError):
            return False
        raise ValueError(f"probe {sorted(probe)} not supported by the process kubelet")

    @staticmethod
    def _port(c: _Container, port: int | str) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for p in c.spec.get("ports", []):
            if p.get("name") == port:
                return int(p["containerPort"])
        raise ValueError(f"container {c.name} has no port named {port}")

    # -- status -----------------------------------------------------------------------------

    async def _pending(self, pod: Obj, why: str) -> None:
        log.info("%s/%s waits: %s", *_key(pod), why)
        ns, name = _key(pod)
        status = {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "True"},
            {"type": "Ready", "status": "False", "reason": "ContainersNotReady", "message": why}]}
        if pod.get("status", {}).get("conditions") and any(
                c.get("message") == why for c in pod["status"]["conditions"]):
            return
        await self._patch_status(ns, name, pod["metadata"]["uid"], status)

    async def _push_status(self, run: _PodRun) -> None:
        async with run.lock:
            cs = run.containers
            started = any(c.state.get("running") or c.restarts or c.done for c in cs)
            ready = (bool(cs) and all(c.ready for c in cs) and not run.forced_unready
                     and not run.stopping)
            if cs and all(c.done for c in cs):
                phase = "Succeeded" if all(
                    c.state["terminated"]["exitCode"] == 0 for c in cs) else "Failed"
            else:
                phase = "Running" if started else "Pending"
            conds = {"PodReadyToStartContainers": True, "Initialized": True,
                     "ContainersReady": all(c.ready for c in cs), "Ready": ready,
                     "PodScheduled": True}
            conditions = []
            for typ, ok in conds.items():
                value = "True" if ok else "False"
                if run.cond_times.get(typ, ("", ""))[0] != value:
                    run.cond_times[typ] = (value, _now())
                conditions.append({"type": typ, "status": value,
                                   "lastTransitionTime": run.cond_times[typ][1]})
            status = {
                "phase": phase, "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
                "podIP": run.ip, "podIPs": [{"ip": run.ip}], "startTime": run.started,
                "conditions": conditions,
                "containerStatuses": [{
                    "name": c.name, "image": c.spec.get("image", ""), "imageID": "",
                    "containerID": f"process://{c.process.pid if c.process else 0}",
                    "ready": c.ready, "started": c.running, "restartCount": c.restarts,
                    "state": c.state, "lastState": c.last_state} for c in cs],
            }
            if status == run.pushed:
                return
            run.pushed = status
            await self._patch_status(*run.key, run.uid, status)

    async def _patch_status(self, ns: str, name: str, uid: str, status: Obj) -> None:
        try:
            await self.api.call("PATCH", f"/api/v1/namespaces/{ns}/pods/{name}/status",
                                {"metadata": {"uid": uid}, "status": status},
                                ctype="application/strategic-merge-patch+json")
        except ApiError as e:
            if e.status not in (409, 422):
                raise

    # -- stopping ---------------------------------------------------------------------------

    async def _terminate(self, run: _PodRun, grace_s: float) -> None:
        await self._kill_run(run, grace_s)
        await self._finish_delete(run.key, run.uid)

    async def _kill_run(self, run: _PodRun, grace_s: float) -> None:
        """SIGTERM, wait up to grace_s, SIGKILL; forget the run and its non-persistent dirs."""
        run.stopping = True
        try:
            await self._push_status(run)
        except Exception:
            log.exception("status on stop of %s/%s", *run.key)
        procs = [c.process for c in run.containers if c.running]
        for p in procs:
            _killpg(p.pid, signal.SIGTERM if grace_s > 0 else signal.SIGKILL)
        if procs:
            await asyncio.wait([asyncio.ensure_future(p.wait()) for p in procs],
                               timeout=grace_s or None)
            for p in procs:
                _killpg(p.pid, signal.SIGKILL)
            await asyncio.gather(*(p.wait() for p in procs))
        for task in run.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        for c in run.containers:  # anything started meanwhile
            if c.running and c.process is not None:
                _killpg(c.process.pid, signal.SIGKILL)
        if self._runs.get(run.key) is run:
            del self._runs[run.key]
        shutil.rmtree(run.root, ignore_errors=True)
        log.info("stopped %s/%s", *run.key)

    async def _finish_delete(self, k: Key, uid: str) -> None:
        try:
            await self.api.call("DELETE", f"/api/v1/namespaces/{k[0]}/pods/{k[1]}",
                                {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}})
        except ApiError as e:
            if e.status != 409:
                raise

    def _signal_run(self, k: Key, sig: int) -> None:
        run = self._runs.get(k)
        if run is None:
            raise KeyError(f"pod {k[0]}/{k[1]} is not running here")
        for c in run.containers:
            if c.running and c.process is not None:
                _killpg(c.process.pid, sig)

    async def _set_unready(self, k: Key, unready: bool) -> None:
        run = self._runs.get(k)
        if run is None:
            raise KeyError(f"pod {k[0]}/{k[1]} is not running here")
        run.forced_unready = unready
        await self._push_status(run)

    # -- volumes ----------------------------------------------------------------------------

    async def _provision_volumes(self) -> None:
        """A hostPath PV pre-bound to every pending PVC; Released ones of ours are removed."""
        claims = await self.api.call("GET", "/api/v1/persistentvolumeclaims")
        volumes = await self.api.call("GET", "/api/v1/persistentvolumes")
        assert claims is not None and volumes is not None
        taken = {pv["spec"].get("claimRef", {}).get("uid") for pv in volumes["items"]}
        for pvc in claims["items"]:
            meta, spec = pvc["metadata"], pvc["spec"]
            if (pvc.get("status", {}).get("phase") != "Pending" or meta["uid"] in taken
                    or meta.get("deletionTimestamp") or spec.get("volumeName")):
                continue
            path = (self.data_root / "volumes" / meta["namespace"]
                    / f"{meta['name']}-{meta['uid'][:8]}")
            path.mkdir(parents=True, exist_ok=True)
            size = spec.get("resources", {}).get("requests", {}).get("storage", "1Gi")
            pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {
                      "name": f"pvc-{meta['uid']}", "labels": {VOLUME_LABEL: "true"}},
                  "spec": {"capacity": {"storage": size},
                           "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                           "volumeMode": spec.get("volumeMode", "Filesystem"),
                           "storageClassName": spec.get("storageClassName") or "",
                           "persistentVolumeReclaimPolicy": "Retain",
                           "hostPath": {"path": str(path), "type": "Directory"},
                           "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                        "namespace": meta["namespace"], "name": meta["name"],
                                        "uid": meta["uid"]}}}
            await self.api.call("POST", "/api/v1/persistentvolumes", pv)
            log.info("provisioned %s for %s/%s", path, meta["namespace"], meta["name"])
        for pv in volumes["items"]:
            labels = pv["metadata"].get("labels") or {}
            if labels.get(VOLUME_LABEL) and pv.get("status", {}).get("phase") == "Released":
                await self.api.call("DELETE", f"/api/v1/persistentvolumes/{pv['metadata']['name']}")
                shutil.rmtree(pv["spec"]["hostPath"]["path"], ignore_errors=True)


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass
