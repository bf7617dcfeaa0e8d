"""A pod lost on the local platform: its process stopped, its whole directory wiped, and
it comes back on an empty volume. The local operator's ObjectStore status (as
`kurastore admin status` shows it) reports Degraded from the moment the pod is gone until
every object has its k+m shards again, checked on the pods' disks at the moment the status
first says Ready again; then everything reads back byte-exact."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from support.cluster import ACCESS_KEY, SECRET_KEY, ServerProcess
from support.s3client import make_client
from support.shards import disk_shards

from kurastore.gateway.admin.client import AdminClient

pytestmark = pytest.mark.integration

KiB = 1 << 10
# Scheduled scrub passes a day apart (the first one 60 s after the start), unthrottled:
# the rebuild is found in seconds only because the lost volume asks for a pass at once.
FAST_REPAIR = ["--scrub-interval", "86400", "--scrub-rate", "0", "--heal-rate", "0"]
REBUILT_WITHIN_S = 40  # from the wipe; the first scheduled pass would come later


def objectstore(server: ServerProcess) -> dict[str, Any]:
    """The local operator's ObjectStore status, as `kurastore admin status` shows it."""

    async def run() -> dict[str, Any]:
        async with AdminClient(server.endpoint, ACCESS_KEY, SECRET_KEY) as client:
            return (await client.status())["objectstore"]

    return asyncio.run(run())


def conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def wait_ready(server: ServerProcess, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while objectstore(server)["phase"] != "Ready":
        assert time.monotonic() < deadline, objectstore(server)
        time.sleep(0.2)


def shard_names(server: ServerProcess, pod: str) -> set[str]:
    found = disk_shards({pod: server.data_dir / "pods" / pod})  # 'pod/partition/id/tag.i'
    return {name.split("/", 1)[1] for name in found}


def test_pod_lost_is_degraded_until_rebuilt(tmp_path: Path) -> None:
    started = time.monotonic()
    server = ServerProcess(tmp_path / "data", extra_args=FAST_REPAIR)
    server.start()
    try:
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="lost")
        payloads = {f"o{i}": os.urandom(64 * KiB + i * 977) for i in range(40)}
        for key, data in payloads.items():
            s3.put_object(Bucket="lost", Key=key, Body=data)
        before = shard_names(server, "pod-3")
        assert len(before) > 0
        wait_ready(server)

        # Stop pod-3, wipe its directory (volume id included), kill it: the local platform
        # starts it again on an empty volume.
        server.kill_pod("pod-3", signal.SIGSTOP)
        shutil.rmtree(server.data_dir / "pods" / "pod-3")
        server.kill_pod("pod-3", signal.SIGKILL)

        seen: list[dict[str, Any]] = []
        rebuilt_when_ready: set[str] | None = None
        deadline = time.monotonic() + REBUILT_WITHIN_S
        while time.monotonic() < deadline:
            status = objectstore(server)
            seen.append(status)
            degraded_seen = any(s["phase"] == "Degraded" for s in seen)
            if degraded_seen and status["phase"] == "Ready":
                rebuilt_when_ready = shard_names(server, "pod-3")
                break
            time.sleep(0.2)
        assert rebuilt_when_ready is not None, seen[-1]
        # Never Ready between the loss and the rebuild.
        first_degraded = next(i for i, s in enumerate(seen) if s["phase"] == "Degraded")
        assert all(s["phase"] != "Ready" for s in seen[first_degraded:-1])
        assert rebuilt_when_ready == before  # every shard back when Ready is first said
        lost = [s for s in seen if s["health"]["volumesRebuilding"] == ["pod-3"]]
        assert lost, "the empty volume was not noticed"
        assert all(conditions(s)["Degraded"] == "True" and s["phase"] == "Degraded"
                   for s in lost)
        assert any("pod-3" in s["message"] and "rebuilding" in s["message"] for s in lost)
        final = seen[-1]
        assert conditions(final)["Ready"] == "True"
        assert conditions(final)["Degraded"] == "False"
        assert final["health"]["status"] == "green" and final["pods"] == "6/6"
        for key, data in payloads.items():
            assert s3.get_object(Bucket="lost", Key=key)["Body"].read() == data
        # `kurastore admin status` shows the same ObjectStore status.
        shown = subprocess.run(
            [sys.executable, "-P", "-m", "kurastore", "admin", "--endpoint", server.endpoint,
             "status"], env=server.env(), capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0 and '"phase": "Ready"' in shown.stdout
        # An operator can ask for a pass by hand too.
        asked = subprocess.run(
            [sys.executable, "-P", "-m", "kurastore", "admin", "--endpoint", server.endpoint,
             "scrub"], env=server.env(), capture_output=True, text=True, timeout=60)
        assert asked.returncode == 0 and '"requested"' in asked.stdout, asked.stderr
        print(f"\npod lost and rebuilt: {time.monotonic() - started:.1f} s")
    finally:
        server.stop()
