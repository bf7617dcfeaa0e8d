"""Faults against a real `kurastore server`: pods killed, the server killed
mid-upload. Acknowledged data must read back byte-exact; nothing half-written
may become visible; orphaned shards must be collected."""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import re
import signal
import socket
import time
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from support.cluster import ServerProcess
from support.s3client import make_client
from support.shards import StoredShard, disk_shards, pod_dirs

pytestmark = pytest.mark.integration

MiB = 1 << 20


def metric(server: ServerProcess, name: str) -> float:
    with urllib.request.urlopen(f"{server.endpoint}/metrics") as resp:
        text = resp.read().decode()
    total = 0.0
    for line in text.splitlines():
        if re.match(rf"^{name}(\{{.*\}})? ", line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def shard_files(server: ServerProcess) -> list[StoredShard]:
    return list(disk_shards(pod_dirs(server.data_dir)).values())


def test_reads_survive_losing_m_pods(fresh_server: ServerProcess) -> None:
    s3 = make_client(fresh_server.endpoint)
    s3.create_bucket(Bucket="survive")
    objects = {f"o{i}": os.urandom(size) for i, size in
               enumerate([100_000, MiB, 3 * MiB + 17, 9 * MiB])}
    for key, data in objects.items():
        s3.put_object(Bucket="survive", Key=key, Body=data)
    before = metric(fresh_server, "kurastore_degraded_reads")
    fresh_server.kill_pod("pod-1", signal.SIGSTOP)  # hung, not dead: the supervisor can't help
    fresh_server.kill_pod("pod-4", signal.SIGSTOP)
    try:
        for key, data in objects.items():
            assert s3.get_object(Bucket="survive", Key=key)["Body"].read() == data
            rng = s3.get_object(Bucket="survive", Key=key, Range="bytes=1000-70000")
            assert rng["Body"].read() == data[1000:70001]
        assert metric(fresh_server, "kurastore_degraded_reads") > before
    finally:
        for pod in ("pod-1", "pod-4"):
            fresh_server.kill_pod(pod, signal.SIGCONT)


def test_killed_pods_come_back_and_writes_go_on(fresh_server: ServerProcess) -> None:
    s3 = make_client(fresh_server.endpoint)
    s3.create_bucket(Bucket="restart")
    old_pid = fresh_server.kill_pod("pod-2")
    data = os.urandom(4 * MiB)
    # Write quorum k+1 = 5 of 6 holds with one pod down.
    s3.put_object(Bucket="restart", Key="during", Body=data)
    assert s3.get_object(Bucket="restart", Key="during")["Body"].read() == data
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pid = fresh_server.pod_pids().get("pod-2")
        if pid and pid != old_pid:
            break
        time.sleep(0.2)
    else:
        pytest.fail("the local platform did not restart the killed pod")


def test_pod_killed_during_put(fresh_server: ServerProcess) -> None:
    s3 = make_client(fresh_server.endpoint)
    s3.create_bucket(Bucket="midput")
    data = os.urandom(40 * MiB)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        fut = pool.submit(s3.put_object, Bucket="midput", Key="k", Body=data)
        time.sleep(0.3)
        fresh_server.kill_pod("pod-0")
        try:
            fut.result()
            acknowledged = True
        except ClientError:
            acknowledged = False
    if acknowledged:
        assert s3.get_object(Bucket="midput", Key="k")["Body"].read() == data
    else:
        with pytest.raises(ClientError):
            s3.head_object(Bucket="midput", Key="k")


def test_server_killed_mid_upload_leaves_nothing_half_visible(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data")
    server.start()
    s3 = make_client(server.endpoint)
    s3.create_bucket(Bucket="crash")
    payloads = {f"k{i}": os.urandom((i % 5 + 1) * 3 * MiB) for i in range(12)}
    acknowledged: set[str] = set()

    def upload(key: str) -> None:
        try:
            s3.put_object(Bucket="crash", Key=key, Body=payloads[key])
            acknowledged.add(key)
        except Exception:  # the server dies under us: these are not acknowledged
            pass

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(upload, k) for k in payloads]
        time.sleep(1.5)
        server.kill()
        concurrent.futures.wait(futures)

    server.start()
    try:
        s3 = make_client(server.endpoint)
        visible = {o["Key"] for o in s3.list_objects_v2(Bucket="crash").get("Contents", [])}
        assert acknowledged <= visible
        for key in visible:
            body = s3.get_object(Bucket="crash", Key=key)["Body"].read()
            assert hashlib.sha256(body).digest() == hashlib.sha256(payloads[key]).digest()
        # Orphans of the cut-off uploads are collected: every shard file left
        # belongs to a visible object (4+2: 6 shards of each single-part object).
        deadline = time.monotonic() + 30
        expected = 6 * sum(1 for k in visible if len(payloads[k]) > 64 * 1024)
        while time.monotonic() < deadline and len(shard_files(server)) != expected:
            time.sleep(0.5)
        assert len(shard_files(server)) == expected
    finally:
        server.stop()


def test_a_port_in_use_is_reported_before_any_pod_starts(tmp_path: Path) -> None:
    squatter = socket.create_server(("127.0.0.1", 0))
    server = ServerProcess(tmp_path / "data", port=squatter.getsockname()[1])
    try:
        with pytest.raises(RuntimeError) as exited:
            server.start(timeout_s=30)
    finally:
        squatter.close()
    assert f"cannot listen on 127.0.0.1:{server.port}: Address already in use" in str(
        exited.value)
    assert "Traceback" not in str(exited.value)
    assert server.pod_pids() == {}
    assert not list((server.data_dir / "logs").glob("*.log"))  # no pod was started
