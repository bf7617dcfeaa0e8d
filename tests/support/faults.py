"""Fault injection helpers for tests against a real `kurastore server`: pods kept down
by kill -9 (a crash loop the local platform's restarts cannot end), pods the test runs
itself (on a volume or behind a network it controls) and registers through the admin
API, polling with a deadline, and a check that the pods' disks hold every shard the
records reference.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kurastore.erasure import ErasureParams
from kurastore.gateway.admin.client import AdminClient
from support.cluster import ACCESS_KEY, SECRET_KEY, ServerProcess, free_port
from support.shards import disk_shards, is_valid, unaccounted

PARAMS = ErasureParams.for_stripe(4, 2)  # what `kurastore server` uses with 6 pods
# Self-repair at test speed: scrub passes back to back, nothing throttled.
FAST_REPAIR = ["--scrub-interval", "2", "--scrub-rate", "0", "--heal-rate", "0"]


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 60.0,
             every_s: float = 0.25) -> float:
    """Polls `check` until true; returns the seconds it took, fails the test at the deadline."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"timed out after {timeout_s} s waiting for: {what}")
        time.sleep(every_s)
    return time.monotonic() - started


def admin(server: ServerProcess, call: str, **kwargs: object) -> dict:
    """One admin API call (an AdminClient method) against the server."""

    async def run() -> dict:
        async with AdminClient(server.endpoint, ACCESS_KEY, SECRET_KEY) as client:
            return await getattr(client, call)(**kwargs)

    return asyncio.run(run())


def maintenance(server: ServerProcess) -> dict:
    return admin(server, "maintenance")


@dataclass
class ExternalPod:
    """A `kurastore pod` process the test runs (not the server's platform), optionally
    inside a command prefix such as `ip netns exec NS`."""

    pod_id: str
    data_dir: Path
    secret_file: Path
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    capacity_bytes: int | None = None
    prefix: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        quota = [] if self.capacity_bytes is None else [
            "--capacity-bytes", str(self.capacity_bytes)]
        with open(self.data_dir.parent / f"{self.pod_id}.log", "ab") as log:
            self.process = subprocess.Popen(
                [*self.prefix, sys.executable, "-P", "-m", "kurastore.storage",
                 "--data", str(self.data_dir), "--listen", f"{self.host}:{self.port}",
                 "--secret-file", str(self.secret_file), "--pod-id", self.pod_id, *quota],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "KURASTORE_LOG_LEVEL": "WARNING"})
        wait_for(f"{self.pod_id} to listen", self.listening, timeout_s=timeout_s, every_s=0.1)

    def listening(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"{self.pod_id} exited with {self.process.returncode}")
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def record(self) -> dict[str, object]:
        """As the admin API's `pods add` takes it."""
        return {"id": self.pod_id, "url": self.url, "zone": "", "node": "", "weight": 1.0}


def add_external_pods(server: ServerProcess, pods: list[ExternalPod]) -> None:
    """Registers the pods (a new placement epoch) and waits until the rebalance is done."""
    admin(server, "add_pods", pods=[p.record() for p in pods])
    wait_for("the rebalance onto the new pods", lambda: admin(server, "rebalance")["done"],
             timeout_s=60, every_s=0.2)


@contextlib.contextmanager
def pods_down(server: ServerProcess, pod_ids: list[str]) -> Iterator[None]:
    """kill -9 the pods, and again every time the local platform restarts one, until the
    block ends; then they are left to come back. Waits until they run again."""
    stop = threading.Event()

    def kill_all() -> None:
        for pod_id, pid in server.pod_pids().items():
            if pod_id in pod_ids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def loop() -> None:
        while not stop.wait(0.05):
            kill_all()

    kill_all()
    killer = threading.Thread(target=loop, name="pods-down", daemon=True)
    killer.start()
    try:
        yield
    finally:
        stop.set()
        killer.join()
    wait_for(f"{pod_ids} to be restarted and listening",
             lambda: all(pod_listening(server, p) for p in pod_ids), timeout_s=60)


def pod_listening(server: ServerProcess, pod_id: str) -> bool:
    """The pod's process runs and accepts connections on its --listen address."""
    pid = server.pod_pids().get(pod_id)
    if pid is None:
        return False
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        host, _, port = args[args.index("--listen") + 1].rpartition(":")
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except (OSError, ValueError):
        return False


def full_redundancy(data_dir: Path, pods: Mapping[str, Path]) -> Callable[[], bool]:
    """A check for wait_for: every shard the records reference is on its pod's disk, and
    every other shard file there is queued for collection."""

    def check() -> bool:
        missing, stray = unaccounted(data_dir, pods)
        return not missing and not stray

    return check


def invalid_shards(pods: Mapping[str, Path]) -> list[str]:
    """Shard files on the pods' disks whose frames do not all verify."""
    return [name for name, path in disk_shards(pods).items()
            if not is_valid(path, PARAMS) and path.exists()]  # a collected file is gone
