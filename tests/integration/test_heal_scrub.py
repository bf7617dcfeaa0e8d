"""Self-repair against a real `kurastore server` (6 pods, 4+2): bitrot flipped in
shard files on disk, a pod whose volume was wiped, a pod killed during writes.
Repairs are checked on the pods' disks (every frame of every shard file verifies
again, every object has its k+m shards), not only through the API."""

from __future__ import annotations

import asyncio
import concurrent.futures
import fnmatch
import os
import shutil
import signal
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from support.cluster import ACCESS_KEY, SECRET_KEY, ServerProcess
from support.s3client import make_client
from support.shards import StoredShard, disk_shards, pod_dirs
from support.shards import is_valid as shard_is_valid

from kurastore.erasure import (
    ErasureParams,
)
from kurastore.gateway.admin.client import AdminClient

pytestmark = pytest.mark.integration

KiB, MiB = 1 << 10, 1 << 20
PARAMS = ErasureParams.for_stripe(4, 2)  # what `kurastore server` uses with 6 pods
# Scrub passes back to back, unthrottled: a test waits seconds, not a day.
FAST_REPAIR = ["--scrub-interval", "1", "--scrub-rate", "0", "--heal-rate", "0"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "data", extra_args=FAST_REPAIR)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def maintenance(server: ServerProcess) -> dict:
    async def fetch() -> dict:
        async with AdminClient(server.endpoint, ACCESS_KEY, SECRET_KEY) as client:
            return await client.maintenance()

    return asyncio.run(fetch())


def shard_files(server: ServerProcess, pod: str = "pod-*") -> dict[str, StoredShard]:
    """'pod-N/partition/object_id/tag.index' -> shard, for every shard on disk."""
    pods = {name: path for name, path in pod_dirs(server.data_dir).items()
            if fnmatch.fnmatch(name, pod)}
    return disk_shards(pods)  # files of both layouts, and packed shards


def is_valid(stored: StoredShard) -> bool:
    """Every frame of the shard verifies with its own index and stripe number (False
    while a corrupt copy is deleted and its rebuild not yet in place)."""
    return shard_is_valid(stored, PARAMS)


def flip(stored: StoredShard, offset: int) -> None:
    byte = stored.read_bytes()[offset]
    stored.patch(offset, bytes([byte ^ 0xFF]))


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 40.0) -> float:
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            pytest.fail(f"timed out after {timeout_s} s waiting for: {what}")
        time.sleep(0.25)
    return time.monotonic() - started


def found_corrupt(server: ServerProcess) -> Counter[str]:
    pods = maintenance(server)["scrub"]["pods"]
    return Counter({pod: state["corrupt"] for pod, state in pods.items()})


def test_bitrot_is_found_by_the_scrubber_and_repaired(server: ServerProcess) -> None:
    s3 = make_client(server.endpoint)
    s3.create_bucket(Bucket="rot")
    payloads = {f"o{i}": os.urandom(size) for i, size in
                enumerate([100 * KiB, MiB, 2 * MiB + 5, 3 * MiB, 700 * KiB, 5 * MiB])}
    for key, data in payloads.items():
        s3.put_object(Bucket="rot", Key=key, Body=data)
    files = shard_files(server)
    by_object: dict[str, list[str]] = {}
    for name in sorted(files):
        by_object.setdefault(name.split("/")[2], []).append(name)
    # One shard of each object, data and parity blocks both; some in frame headers.
    victims = [names[i % 6] for i, names in enumerate(by_object.values())]
    for n, name in enumerate(victims):
        size = files[name].size
        flip(files[name], [5, size // 2, size - 1, 40, size // 3, 17][n % 6])
    assert not any(is_valid(files[name]) for name in victims)
    flipped = Counter(name.split("/")[0] for name in victims)

    # Nothing reads these objects: only the scrubber can find them.
    wait_for("the scrubber to find every flipped shard",
             lambda: not flipped - found_corrupt(server))
    wait_for("the healer to repair every flipped shard on disk",
             lambda: all(is_valid(files[name]) for name in victims))
    assert all(is_valid(path) for path in shard_files(server).values())
    assert set(shard_files(server)) == set(files)

    # Bitrot under readers: data blocks rot, GETs still return the right bytes.
    readers_victims = [names[i % 4] for i, names in enumerate(by_object.values())]
    for name in readers_victims:
        flip(files[name], files[name].size // 2)
    for key, data in payloads.items():
        assert s3.get_object(Bucket="rot", Key=key)["Body"].read() == data
    wait_for("the healer to repair what readers found",
             lambda: all(is_valid(files[name]) for name in readers_victims))
    # The healer counts a shard once the pod has stored it: shortly after it is on disk.
    wait_for("the healer to count every repair", lambda: maintenance(server)["heal"]["healed"]
             >= len(victims) + len(readers_victims), timeout_s=10)
    wait_for("an empty heal queue", lambda: maintenance(server)["heal"]["queued"] == 0)

    # Durability as a scrub pass measured it, in the admin API and in the metrics.
    def all_at_k_plus_m() -> bool:
        durability = maintenance(server)["scrub"]["durability"]
        return durability["objects_by_healthy_blocks"] == {"6": len(payloads)}

    wait_for("a scrub pass to measure every object at k+m healthy blocks", all_at_k_plus_m)
    with urllib.request.urlopen(f"{server.endpoint}/metrics") as resp:
        metrics = resp.read().decode()
    assert f'kurastore_objects_by_healthy_blocks{{healthy_blocks="6"}} {len(payloads)}.0' in metrics
    assert 'kurastore_objects_by_healthy_blocks{healthy_blocks="5"} 0.0' in metrics
    assert "kurastore_heal_queue_length 0.0" in metrics
    assert "kurastore_oldest_unscrubbed_shard_age_seconds" in metrics


def test_a_shard_file_of_another_object_is_never_served(server: ServerProcess) -> None:
    # Two objects of the same size: their shard files have the same geometry, and every
    # frame of one is intact. Copied over a shard of the other (a misdirected write, a
    # file restored to the wrong place), it must count as lost, not as that object's data.
    s3 = make_client(server.endpoint)
    s3.create_bucket(Bucket="swap")
    payloads = {key: os.urandom(3 * MiB) for key in ("a", "b")}
    for key, data in payloads.items():
        s3.put_object(Bucket="swap", Key=key, Body=data)
    files = shard_files(server)
    by_object: dict[str, dict[str, str]] = {}
    for name in files:  # pod/partition/object_id/tag.index
        by_object.setdefault(name.split("/")[2], {})[name.rsplit(".", 1)[1]] = name
    first, second = by_object.values()
    for index in ("0", "1"):  # two data blocks: a GET must decode around both
        files[first[index]].patch(0, files[second[index]].read_bytes())
    assert not any(is_valid(files[first[index]]) for index in ("0", "1"))

    for key, data in payloads.items():
        assert s3.get_object(Bucket="swap", Key=key)["Body"].read() == data
    wait_for("the healer to put back the right shards",
             lambda: all(is_valid(files[first[index]]) for index in ("0", "1")))
    for key, data in payloads.items():
        assert s3.get_object(Bucket="swap", Key=key)["Body"].read() == data


def test_wiped_pod_is_rebuilt_completely(server: ServerProcess) -> None:
    s3 = make_client(server.endpoint)
    s3.create_bucket(Bucket="wipe")
    payloads = {f"o{i}": os.urandom((i % 4 + 1) * MiB + i * 1000) for i in range(16)}
    for key, data in payloads.items():
        s3.put_object(Bucket="wipe", Key=key, Body=data)
    before = {name: path.read_bytes() for name, path in shard_files(server, "pod-3").items()}
    held = sum(len(b) for b in before.values())
    assert before

    # Stop the pod, empty its volume, kill it: the local platform restarts it empty.
    server.kill_pod("pod-3", signal.SIGSTOP)
    volume = server.data_dir / "pods" / "pod-3"
    for entry in [*(volume / "shards").iterdir(), *(volume / "packs").iterdir()]:
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    server.kill_pod("pod-3", signal.SIGKILL)
    assert not shard_files(server, "pod-3")

    took = wait_for("pod-3's shards to be rebuilt",
                    lambda: set(shard_files(server, "pod-3")) == set(before), timeout_s=60)
    after = {name: path.read_bytes() for name, path in shard_files(server, "pod-3").items()}
    assert after == before  # rebuilt frames are byte-identical to what the PUTs wrote
    print(f"\nrebuilt {held / MiB:.1f} MiB of pod-3 in {took:.1f} s "
          f"(scrub discovery included)")
    for key, data in payloads.items():
        assert s3.get_object(Bucket="wipe", Key=key)["Body"].read() == data


def test_writes_missed_by_a_killed_pod_are_healed(server: ServerProcess) -> None:
    s3 = make_client(server.endpoint)
    s3.create_bucket(Bucket="missed")
    payloads = {f"o{i}": os.urandom(MiB + i * 4099) for i in range(30)}
    acknowledged: list[str] = []
    under_way = threading.Event()

    def write_all() -> None:
        for key, data in payloads.items():
            try:
                s3.put_object(Bucket="missed", Key=key, Body=data)
                acknowledged.append(key)
            except ClientError:
                pass  # refused while the pod was going: not acknowledged, fine
            if len(acknowledged) == 5:
                under_way.set()
        under_way.set()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        writes = pool.submit(write_all)
        # The kill lands with 25 writes still to come, however fast the writes are (a
        # fixed sleep let all 30 finish first once PUTs got quicker).
        assert under_way.wait(60)
        server.kill_pod("pod-1")
        writes.result()
    assert len(acknowledged) >= len(payloads) - 2

    def every_object_has_all_shards() -> bool:
        per_object = Counter(name.split("/")[2] for name in shard_files(server))
        return len(per_object) == len(acknowledged) and set(per_object.values()) == {6}

    missed = 6 * len(acknowledged) - len(shard_files(server))
    took = wait_for("k+m shards on disk for every object", every_object_has_all_shards,
                    timeout_s=60)
    healed = maintenance(server)["heal"]["healed"]
    print(f"\n{len(acknowledged)} writes acknowledged, ~{missed} shards missed, "
          f"{healed} healed in {took:.1f} s")
    assert healed >= 1  # the pod did miss writes, and the healer put them back
    assert all(is_valid(path) for path in shard_files(server).values())
    for key in acknowledged:
        assert s3.get_object(Bucket="missed", Key=key)["Body"].read() == payloads[key]
