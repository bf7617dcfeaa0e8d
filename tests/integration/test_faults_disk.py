"""A full disk on one pod, under a steady mixed client load, against a real `kurastore
server` (6 pods, erasure 4+2) with a seventh pod whose volume is a 4 MiB tmpfs (we run
as root: `mount -t tmpfs -o size=4m`; where mounting is refused, the pod's
--capacity-bytes quota stands in for it, which answers the same 507).

What it proves:
- writes go on with the remaining pods while the pod answers 507 (the write quorum
  k+1 holds): the client sees no error at all;
- nothing corrupt is stored: every shard file on the full pod verifies frame by frame,
  and no partial file is left in its tmp/ once the writes end;
- when space returns (`mount -o remount,size=...`, or the pod restarted with a larger
  quota) the pod takes writes again, and the healer rebuilds what it missed: the disks
  end holding every referenced shard, and every acknowledged object reads back
  byte-exact.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cluster import ServerProcess
from support.faults import (
    FAST_REPAIR,
    ExternalPod,
    add_external_pods,
    full_redundancy,
    invalid_shards,
    maintenance,
    wait_for,
)
from support.load import LoadDriver, make_client
from support.shards import disk_shards, pod_dirs

pytestmark = pytest.mark.integration

MiB = 1 << 20
SMALL, LARGE = 4 * MiB, 256 * MiB


def mount_tmpfs(path: Path, size: int) -> bool:
    """True when a tmpfs of `size` bytes is mounted on `path` (False: refused here)."""
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


@pytest.fixture
def full_pod(tmp_path: Path) -> Iterator[tuple[ServerProcess, ExternalPod, bool]]:
    server = ServerProcess(tmp_path / "data", extra_args=FAST_REPAIR)
    volume = tmp_path / "small-volume" / "pod-x"
    volume.mkdir(parents=True)
    is_tmpfs = mount_tmpfs(volume, SMALL)
    pod = ExternalPod("pod-x", volume, server.data_dir / "cluster.secret",
                      capacity_bytes=None if is_tmpfs else SMALL)
    try:
        server.start()
        pod.start()
        yield server, pod, is_tmpfs
    finally:
        server.stop()
        pod.stop()
        if is_tmpfs:
            subprocess.run(["umount", "-l", str(volume)], check=False)


def free_bytes(path: Path) -> int:
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def test_full_disk_on_one_pod(full_pod: tuple[ServerProcess, ExternalPod, bool]) -> None:
    server, pod, is_tmpfs = full_pod
    print(f"\nthe small volume is {'a 4 MiB tmpfs' if is_tmpfs else 'a 4 MiB pod quota'}")
    add_external_pods(server, [pod])
    make_client(server.endpoint).create_bucket(Bucket="full")
    load = LoadDriver(server.endpoint, "full", threads=3, seed=31).start()
    pods = {**pod_dirs(server.data_dir), "pod-x": pod.data_dir}

    def held() -> int:
        return sum(p.size for p in disk_shards({"pod-x": pod.data_dir}).values())

    try:
        wait_for("pod-x's volume to fill up", lambda: held() > SMALL - 512 * 1024, timeout_s=90)
        load.wait_ops(30)  # with the disk full
        assert not load.failures, f"errors with one pod's disk full: {load.failures[:5]}"
        queued = maintenance(server)["heal"]["queued"]
        full_at = held()

        if is_tmpfs:  # space returns
            subprocess.run(["mount", "-o", f"remount,size={LARGE}", str(pod.data_dir)],
                           check=True)
        else:
            pod.stop()
            pod.capacity_bytes = LARGE
            pod.start()
        load.wait_ops(30)
    finally:
        load.stop()
    assert not load.failures, f"errors: {load.failures[:5]}"
    assert not list((pod.data_dir / "tmp").iterdir()), "partial files left on the full pod"
    assert not invalid_shards({"pod-x": pod.data_dir})
    print(f"{load.summary()}; pod-x held {full_at / MiB:.2f} MiB when full "
          f"(free {free_bytes(pod.data_dir) / MiB:.0f} MiB now); {queued} shards queued "
          f"for healing while full")

    took = wait_for("every referenced shard on its pod's disk, pod-x's too",
                    full_redundancy(server.data_dir, pods), timeout_s=90, every_s=0.5)
    assert not invalid_shards(pods)
    print(f"full redundancy {took:.1f} s after the load stopped; pod-x holds "
          f"{held() / MiB:.1f} MiB")
    assert held() > full_at  # the healer wrote what it missed
    assert load.verify_all() > 0
