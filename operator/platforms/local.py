"""The local platform: storage pods as child processes on this machine.

Each pod is `python -m kurastore.storage` on its own directory and loopback
port. A supervisor restarts a pod that dies (with backoff, as a kubelet would),
so a killed pod comes back with its volume intact. Stopping terminates every
pod and waits for it. Each volume carries a random id (volume.id), written when a
pod starts on a directory without one: a new id tells the local operator that the
pod came back on an empty volume (platforms/local_control.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from kurastore.operator.platforms.ports import free_port
from kurastore.storage import PodClient

log = logging.getLogger("kurastore.operator.local")

RESTART_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)
READY_TIMEOUT_S = 30.0


@dataclass
class LocalPod:
    pod_id: str
    data_dir: Path
    host: str
    port: int
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    started_at: float = field(default_factory=time.monotonic)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


class LocalPods:
    """Starts, supervises and stops a set of pod processes."""

    def __init__(
        self, root: Path, pod_ids: list[str], secret_file: Path, secret: bytes,
        *, host: str = "127.0.0.1", log_dir: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self._root = root
        self._secret_file = secret_file
        self._client = PodClient(secret, connect_timeout_s=1.0, request_timeout_s=5.0, retries=0)
        self._log_dir = log_dir or root
        self.pods = {
            pid: LocalPod(pid, root / pid, host, free_port(host)) for pid in pod_ids
        }
        self._env = dict(env or {})
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        for pod in self.pods.values():
            pod.data_dir.mkdir(parents=True, exist_ok=True)
            await _stop_stale(pod.data_dir)
            await self._spawn(pod)
        await asyncio.gather(*(self._wait_ready(p) for p in self.pods.values()))
        self._supervisor = asyncio.create_task(self._supervise(), name="local-pods-supervisor")

    async def add_pods(self, ids: list[str]) -> list[LocalPod]:
        """Starts more pods while the others run; returns them once every one is ready
        (a pod that does not come up is stopped again, and the error raised)."""
        if any(pod_id in self.pods for pod_id in ids):
            raise ValueError(f"pods {sorted(set(ids) & set(self.pods))} exist already")
        host = next(iter(self.pods.values())).host if self.pods else "127.0.0.1"
        added = [LocalPod(pid, self._root / pid, host, free_port(host)) for pid in ids]
        try:
            for pod in added:
                pod.data_dir.mkdir(parents=True, exist_ok=True)
                await _stop_stale(pod.data_dir)
                await self._spawn(pod)
            await asyncio.gather(*(self._wait_ready(p) for p in added))
        except BaseException:
            for pod in added:
                await _terminate(pod)
            raise
        self.pods.update({pod.pod_id: pod for pod in added})  # supervised from now on
        return added

    async def remove_pod(self, pod_id: str) -> None:
        """Stops one pod for good (it is no longer supervised); its volume is left."""
        pod = self.pods.pop(pod_id, None)
        if pod is not None:
            await _terminate(pod)
            log.info("pod %s stopped and removed", pod_id)

    async def ready(self, pod_id: str) -> bool:
        """The pod's process runs and answers its readiness check."""
        pod = self.pods.get(pod_id)
        if pod is None or pod.process is None or pod.process.returncode is not None:
            return False
        return await self._client.is_ready(pod.url)

    def volume_id(self, pod_id: str) -> str | None:
        """The id of the volume the pod runs on (None: none written yet)."""
        try:
            return (self._root / pod_id / VOLUME_ID).read_text().strip() or None
        except OSError:
            return None

    async def restart_pod(self, pod_id: str) -> None:
        """Stops the pod's process; the supervisor starts it again."""
        pod = self.pods.get(pod_id)
        if pod is not None and pod.process is not None and pod.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                pod.process.send_signal(signal.SIGTERM)

    async def _spawn(self, pod: LocalPod) -> None:
        pod.data_dir.mkdir(parents=True, exist_ok=True)  # a wiped volume is made anew
        marker = pod.data_dir / VOLUME_ID
        if not marker.exists():
            marker.write_text(uuid.uuid4().hex)
        log_path = self._log_dir / f"{pod.pod_id}.log"
        # The child inherits the descriptor; ours is closed right after the spawn.
        log_file = open(log_path, "ab")  # noqa: ASYNC230
        try:
            pod.process = await asyncio.create_subprocess_exec(
                sys.executable, "-P", "-m", "kurastore.storage",
                "--data", str(pod.data_dir),
                "--listen", f"{pod.host}:{pod.port}",
                "--secret-file", str(self._secret_file),
                "--pod-id", pod.pod_id,
                stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                start_new_session=True,  # Ctrl-C reaches us, and we stop the pods in order
                preexec_fn=_die_with_parent,
                env={**os.environ, **self._env},
            )
        finally:
            log_file.close()
        (pod.data_dir / PIDFILE).write_text(str(pod.process.pid))
        pod.started_at = time.monotonic()
        log.info("pod %s started pid=%s url=%s", pod.pod_id, pod.process.pid, pod.url)

    async def _wait_ready(self, pod: LocalPod) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if pod.process is not None and pod.process.returncode is not None:
                raise RuntimeError(
                    f"pod {pod.pod_id} exited with {pod.process.returncode}; "
                    f"see {self._log_dir / (pod.pod_id + '.log')}"
                )
            if await self._client.is_ready(pod.url):
                return
            await asyncio.sleep(0.05)
        raise TimeoutError(f"pod {pod.pod_id} not ready after {READY_TIMEOUT_S} s")

    async def _supervise(self) -> None:
        while not self._stopping:
            await asyncio.sleep(0.2)
            for pod in self.pods.values():
                proc = pod.process
                if proc is None or proc.returncode is None or self._stopping:
                    continue
                delay = RESTART_BACKOFF_S[min(pod.restarts, len(RESTART_BACKOFF_S) - 1)]
                if time.monotonic() - pod.started_at > 60:
                    pod.restarts = 0  # it ran fine for a while: forget old crashes
                log.warning(
                    "pod %s exited with %s; restarting in %.1f s",
                    pod.pod_id, proc.returncode, delay,
                )
                pod.process = None
                pod.restarts += 1
                asyncio.get_running_loop().call_later(
                    delay, lambda p=pod: asyncio.ensure_future(self._restart(p))
                )

    async def _restart(self, pod: LocalPod) -> None:
        if self._stopping or pod.process is not None or self.pods.get(pod.pod_id) is not pod:
            return  # stopping, already back, or removed meanwhile
        with contextlib.suppress(Exception):
            await self._spawn(pod)

    async def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        procs = [p.process for p in self.pods.values() if p.process is not None]
        for proc in procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        await self._client.close()

    def pids(self) -> dict[str, int]:
        return {
            p.pod_id: p.process.pid for p in self.pods.values()
            if p.process is not None and p.process.returncode is None
        }


PIDFILE = "pod.pid"
VOLUME_ID = "volume.id"


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the server dies, even by kill -9,
    so no pod outlives it and a restarted server never finds two pods on one volume."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stale_pid(data_dir: Path) -> int | None:
    """The pid of a pod an earlier server left running on this volume, if any."""
    try:
        pid = int((data_dir / PIDFILE).read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    if b"kurastore.storage" not in cmdline or str(data_dir).encode() not in cmdline:
        return None
    return pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _stop_stale(data_dir: Path) -> None:
    """A pod left running on this volume by an earlier server is stopped first."""
    pid = _stale_pid(data_dir)
    if pid is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not _alive(pid):
            return
        await asyncio.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def pod_ids(count: int) -> list[str]:
    return [f"pod-{i}" for i in range(count)]


async def _terminate(pod: LocalPod, timeout_s: float = 10.0) -> None:
    proc = pod.process
    pod.process = None
    if proc is None or proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()

