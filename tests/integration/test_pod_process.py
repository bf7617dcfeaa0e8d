"""A real pod process (`python -m kurastore.storage`) driven over loopback by PodClient:
serves and persists shards, survives SIGSTOP without hanging its clients, loses nothing
acknowledged and shows nothing half-written after kill -9, stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kurastore.operator.platforms.ports import free_port
from kurastore.storage import PodClient, PodUnavailable, ShardId, ShardNotFound

pytestmark = pytest.mark.integration

SECRET = b"integration-pod-secret-0123456789"


class PodProcess:
    def __init__(self, data: Path, secret_file: Path) -> None:
        self.data, self.secret_file = data, secret_file
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        with open(self.data.parent / f"pod-{self.port}.log", "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kurastore.storage", "--data", str(self.data),
                 "--listen", f"127.0.0.1:{self.port}", "--secret-file", str(self.secret_file),
                 "--pod-id", "pod-it"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )

    async def start(self, client: PodClient) -> None:
        await asyncio.to_thread(self.spawn)
        assert self.proc is not None
        deadline = time.monotonic() + 30
        while not await client.is_ready(self.url):
            assert self.proc.poll() is None, "pod exited at startup"
            assert time.monotonic() < deadline, "pod not ready within 30 s"
            await asyncio.sleep(0.1)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float = 15.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)


async def test_pod_process(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET + b"\n")
    pod = PodProcess(tmp_path / "data", secret_file)
    client = PodClient(SECRET, connect_timeout_s=1.0, request_timeout_s=1.0, retries=1)
    try:
        await pod.start(client)
        kept = ShardId("a" * 32, "p1", 0)
        data = os.urandom(20 << 20)
        await client.put_shard(pod.url, 11, kept, data)
        assert await client.read_shard(pod.url, 11, kept, 5, 100) == data[5:105]

        # A hung pod (SIGSTOP): every call fails within the timeouts, none hangs.
        big = os.urandom(32 << 20)
        pod.signal(signal.SIGSTOP)
        try:
            start = time.monotonic()
            with pytest.raises(PodUnavailable):
                await client.read_shard(pod.url, 11, kept)
            with pytest.raises(PodUnavailable):
                await client.put_shard(pod.url, 11, ShardId("b" * 32, "p1", 0), big)
            assert time.monotonic() - start < 6.0
        finally:
            pod.signal(signal.SIGCONT)
        assert await client.read_shard(pod.url, 11, kept) == data

        # kill -9 in the middle of an upload: after restart the acknowledged shard is
        # whole, the cut-off one is invisible and no temporary file is left.
        cut = ShardId("c" * 32, "p1", 0)

        async def endless() -> object:
            while True:
                yield os.urandom(1 << 20)
                await asyncio.sleep(0.01)

        upload = asyncio.create_task(client.put_shard(pod.url, 11, cut, endless()))
        for _ in range(200):
            if os.listdir(pod.data / "tmp"):
                break
            await asyncio.sleep(0.02)
        assert os.listdir(pod.data / "tmp"), "the upload never reached the pod's disk"
        pod.signal(signal.SIGKILL)
        pod.wait()
        with pytest.raises(PodUnavailable):
            await upload
        await pod.start(client)
        assert os.listdir(pod.data / "tmp") == []
        with pytest.raises(ShardNotFound):
            await client.head_shard(pod.url, 11, cut)
        assert await client.read_shard(pod.url, 11, kept) == data
        usage = await client.usage(pod.url)
        assert (usage.used_bytes, usage.shards) == (len(data), 1)

        # SIGTERM: a clean stop.
        pod.signal(signal.SIGTERM)
        assert pod.wait() == 0
    finally:
        await client.close()
        if pod.proc is not None and pod.proc.poll() is None:
            pod.proc.kill()
            pod.proc.wait()
