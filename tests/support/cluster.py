"""A real `kurastore server` in a child process, for integration and client tests.

Starts the server on a free loopback port with its own data directory and
known root keys, waits until it answers, and can kill or restart it and its
pods the way a fault would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from kurastore.operator.platforms.ports import free_port

__all__ = ["ACCESS_KEY", "REGION", "SECRET_KEY", "ServerProcess", "free_port"]

ACCESS_KEY = "KSTESTROOTACCESSKEY1"
SECRET_KEY = "test/secret/key/0123456789abcdefghijklmn"
REGION = "us-east-1"


@dataclass
class ServerProcess:
    data_dir: Path
    pods: int = 6
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra_args: list[str] = field(default_factory=list)  # more `kurastore server` flags

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KURASTORE_ACCESS_KEY=ACCESS_KEY,
            KURASTORE_SECRET_KEY=SECRET_KEY,
            PYTHONSAFEPATH="1",
            KURASTORE_LOG_LEVEL=env.get("KURASTORE_TEST_LOG_LEVEL", "WARNING"),
        )
        return env

    def start(self, timeout_s: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.data_dir / "server.log"
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "kurastore", "server", "--data", str(self.data_dir),
             "--pods", str(self.pods), "--listen", f"127.0.0.1:{self.port}",
             *self.extra_args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env(),
        )
        log.close()
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"kurastore server exited:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.endpoint}/_kura/readyz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"kurastore server not ready:\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """kill -9 the gateway (the pods are left orphaned and killed too)."""
        if self.process is not None and self.process.poll() is None:
            # Signalled before the /proc scan below, which takes tens of ms: a test
            # that kills as soon as one request is answered means the next in flight.
            self.process.send_signal(signal.SIGKILL)
        pods = self.pod_pids()
        self.stop(signal.SIGKILL)
        for pid in pods.values():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in pods.values():
            _wait_gone(pid)

    def pod_pids(self) -> dict[str, int]:
        """pod id -> pid of the live pod processes of this server's data directory."""
        pods_root = str(self.data_dir.resolve() / "pods")
        found: dict[str, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            args = [a.decode(errors="replace") for a in argv]
            if "kurastore.storage" in args and "--data" in args:
                data = args[args.index("--data") + 1]
                if data.startswith(pods_root + "/") and "--pod-id" in args:
                    found[args[args.index("--pod-id") + 1]] = int(entry.name)
        return found

    def kill_pod(self, pod_id: str, sig: int = signal.SIGKILL) -> int:
        pid = self.pod_pids()[pod_id]
        os.kill(pid, sig)
        return pid


def _wait_gone(pid: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)


def create_user(server: ServerProcess, name: str) -> dict:
    """A new user made as an operator would, with `kurastore admin user create NAME`
    as root: its JSON answer (user, user_id, access_key, secret_key)."""
    out = subprocess.run(
        [sys.executable, "-P", "-m", "kurastore", "admin", "--endpoint", server.endpoint,
         "user", "create", name],
        capture_output=True, text=True, check=True,
        env={"KURASTORE_ACCESS_KEY": ACCESS_KEY, "KURASTORE_SECRET_KEY": SECRET_KEY,
             "PATH": "/usr/bin:/bin"},
    )
    return json.loads(out.stdout)
