"""Scale out and drain on a real `kurastore server`, carried out by its local operator
(the reconciler the Kubernetes operator runs): `kurastore admin pods add` adds a seventh
pod to the desired spec, the operator starts and registers it while a client keeps
reading and writing; the rebalancer moves about 1/7 of the shards onto it, and the
ObjectStore status shows the progress, then Ready; `pods drain` takes it out of the spec,
the store empties it and the operator removes it by itself, even across a kill -9 of the
server mid-drain; no request fails and every object reads back byte-exact."""

from __future__ import annotations

import asyncio
import concurrent.futures
import fnmatch
import json
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support.cluster import ACCESS_KEY, SECRET_KEY, ServerProcess
from support.s3client import make_client
from support.shards import disk_shards, pod_dirs

from kurastore.gateway.admin.client import AdminClient

pytestmark = pytest.mark.integration

KiB = 1 << 10
SIZES = [5 * KiB, 80 * KiB, 200 * KiB, 600 * KiB + 17]  # 5 KiB is stored inline


def admin_cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-m", "kurastore", "admin", "--endpoint", server.endpoint,
         *args], env=server.env(), capture_output=True, text=True, timeout=60,
    )


def admin(server: ServerProcess, call: str, *args: Any) -> Any:
    async def run() -> Any:
        async with AdminClient(server.endpoint, ACCESS_KEY, SECRET_KEY) as client:
            return await getattr(client, call)(*args)

    return asyncio.run(run())


def objectstore(server: ServerProcess) -> dict[str, Any]:
    """The local operator's ObjectStore status, as `kurastore admin status` shows it."""
    return admin(server, "status")["objectstore"]


class StatusWatch:
    """Samples the ObjectStore status every 0.1 s until stopped."""

    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(objectstore(self.server))
            time.sleep(0.1)

    def __enter__(self) -> StatusWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def saw_rebalance_running(self) -> bool:
        return any(s["phase"] == "Rebalancing" and s["rebalance"]["state"] == "Running"
                   and s["rebalance"]["partitionsLeft"] > 0
                   and s["rebalance"]["progress"] != "100%" for s in self.samples)

    def phases(self) -> set[str]:
        return {s["phase"] for s in self.samples}


def wait_status(server: ServerProcess, check: Any, what: str, timeout_s: float = 60.0,
                ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = objectstore(server)
        if check(status):
            return status
        time.sleep(0.2)
    raise AssertionError(f"{what}: not reached; status {status}")


def conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


def shards_on(server: ServerProcess, pod: str = "*") -> int:
    pods = {name: path for name, path in pod_dirs(server.data_dir).items()
            if fnmatch.fnmatch(name, pod)}
    return len(disk_shards(pods))  # either layout


def wait_rebalanced(server: ServerProcess, epoch: int, timeout_s: float = 30.0) -> dict:
    """Until nothing pins an epoch older than `epoch` and the old copies are deleted."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        progress = admin(server, "rebalance")
        if (progress["target_epoch"] == epoch and progress["done"]
                and progress["old_copies_waiting"] == 0):
            return progress
        time.sleep(0.5)
    raise AssertionError(f"rebalance to epoch {epoch} did not finish: {progress}")


class Traffic:
    """A client reading known objects and writing new ones until stopped."""

    def __init__(self, server: ServerProcess, known: dict[str, bytes], prefix: str) -> None:
        self.prefix = prefix
        self.s3 = make_client(server.endpoint)
        self.known = dict(known)
        self.written: dict[str, bytes] = {}
        self.reads = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = random.Random(3)
        n = 0
        while not self._stop.is_set():
            key = rng.choice(list(self.known))
            try:
                got = self.s3.get_object(Bucket="scale", Key=key)["Body"].read()
                if got != self.known[key]:
                    self.failures.append(f"GET {key}: wrong bytes")
                self.reads += 1
                if n % 3 == 0:
                    data = os.urandom(100 * KiB)
                    key = f"{self.prefix}{n}"
                    self.s3.put_object(Bucket="live", Key=key, Body=data)
                    self.written[key] = data
            except Exception as exc:  # every failure is a test failure, reported at the end
                self.failures.append(f"{key}: {exc!r}")
            n += 1

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_scale_out_then_drain(tmp_path: Path) -> None:
    started = time.monotonic()
    # Throttled, so that the status is seen mid-rebalance and a kill lands mid-drain.
    server = ServerProcess(tmp_path / "data",
                           extra_args=["--rebalance-grace", "1", "--rebalance-rate", "4M"])
    server.start()
    try:
        s3 = make_client(server.endpoint)
        s3.create_bucket(Bucket="scale")
        s3.create_bucket(Bucket="live")
        objects = {f"o{i:03d}": os.urandom(SIZES[i % len(SIZES)]) for i in range(200)}
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda kv: s3.put_object(Bucket="scale", Key=kv[0], Body=kv[1]),
                          objects.items()))
        before = shards_on(server)
        assert before == 150 * 6  # three sizes in four have shards; 4+2 each
        status = wait_status(server, lambda s: s["phase"] == "Ready", "Ready at start")
        assert status["pods"] == "6/6" and status["health"]["status"] == "green"

        # A pod that is not draining cannot be removed; unknown pods, bad URLs are refused.
        refused = admin_cli(server, "pods", "remove", "pod-0")
        assert refused.returncode == 1 and "409" in refused.stderr
        unknown = admin_cli(server, "pods", "drain", "pod-99")
        assert unknown.returncode == 1 and "404" in unknown.stderr
        bad = admin_cli(server, "pods", "add", "--id", "pod-x", "--url", "ftp://nowhere")
        assert bad.returncode == 1 and "400" in bad.stderr

        with StatusWatch(server) as watch, Traffic(server, objects, "scale-") as traffic:
            added = admin_cli(server, "pods", "add", "--count", "1")
            assert added.returncode == 0, added.stderr
            # The traffic's writes so far were made under the old epoch and move too.
            pinned_old = before + 6 * len(traffic.written)
            out = json.loads(added.stdout)
            assert out["added"][0]["id"] == "pod-6"
            spec = admin(server, "spec")
            assert spec["spec"]["pods"] == [f"pod-{i}" for i in range(7)]
            listed = admin(server, "list_pods")
            assert [p["id"] for p in listed["pods"]] == [f"pod-{i}" for i in range(7)]
            progress = wait_rebalanced(server, out["epoch"], timeout_s=60)
            status = wait_status(server, lambda s: s["phase"] == "Ready", "Ready after scale")
            wrote_during_scale = len(traffic.written)
        assert watch.saw_rebalance_running(), watch.phases()
        assert status["pods"] == "7/7" and status["placementEpoch"] == out["epoch"]
        assert status["rebalance"]["progress"] == "100%"
        assert status["rebalance"]["bytesMoved"] > 0
        assert conditions(status)["Ready"] == "True"
        assert conditions(status)["Rebalancing"] == "False"
        moved = progress["shards_moved"]
        assert 1 / 7 / 1.15 <= moved / pinned_old <= 1.15 / 7, (moved, pinned_old)
        assert progress["bytes_moved"] > 0 and progress["retired_epochs"]
        # On disk: the moved shards are on pod-6, the old copies are gone.
        new_shards = 6 * len(traffic.written)
        assert shards_on(server) == before + new_shards
        assert moved <= shards_on(server, "pod-6") <= moved + new_shards
        assert not traffic.failures, traffic.failures[:5]
        assert traffic.reads > 0 and wrote_during_scale > 0

        written = dict(traffic.written)
        # Drain the new pod while traffic goes on: the operator marks it draining at once.
        with StatusWatch(server) as watch, Traffic(server, objects, "drain-") as traffic:
            drained = admin_cli(server, "pods", "drain", "pod-6")
            assert drained.returncode == 0, drained.stderr
            assert json.loads(drained.stdout)["draining"] == "pod-6"
            time.sleep(1.0)
        assert not traffic.failures, traffic.failures[:5]
        written.update(traffic.written)
        assert "Draining" in watch.phases(), watch.phases()
        views = {p["id"]: p for p in admin(server, "list_pods")["pods"]}
        assert views["pod-6"]["state"] == "draining" and not views["pod-6"]["empty"]
        assert "pod-6" not in admin(server, "spec")["spec"]["pods"]

        # kill -9 mid-drain: the restarted server runs pod-6 again (it still holds data),
        # and its operator carries the drain on from what is on disk. The old copies the
        # kill left on pod-6 are the scrubber's to delete (misplaced, once older than the
        # orphan grace, an hour by default): until then pod-6 is not empty and stays.
        # Scrub passes back to back and a short grace make that seconds.
        server.kill()
        server.extra_args = ["--rebalance-grace", "1", "--rebalance-rate", "0",
                             "--scrub-interval", "1", "--scrub-rate", "0",
                             "--orphan-grace", "2"]
        server.start()
        try:
            status = wait_status(
                server, lambda s: s["phase"] == "Ready" and len(s["pools"]) == 6,
                "drained and removed after the restart")
        except AssertionError as exc:
            views = {p["id"]: p for p in admin(server, "list_pods")["pods"]}
            raise AssertionError(f"{views.get('pod-6')}; {admin(server, 'rebalance')}; "
                                 f"{shards_on(server, 'pod-6')} shard files") from exc
        assert status["pods"] == "6/6"
        assert conditions(status)["Draining"] == "False"
        assert "pod-6" not in {p["id"] for p in admin(server, "list_pods")["pods"]}
        assert "pod-6" not in server.pod_pids()
        assert shards_on(server, "pod-6") == 0
        # `pods remove` of a pod the operator removed already answers as a removal did.
        removed = admin_cli(server, "pods", "remove", "pod-6")
        assert removed.returncode == 0, removed.stderr
        assert json.loads(removed.stdout)["removed"] == "pod-6"
        for key, data in objects.items():
            assert s3.get_object(Bucket="scale", Key=key)["Body"].read() == data
        for key, data in written.items():
            assert s3.get_object(Bucket="live", Key=key)["Body"].read() == data

        # A desired spec below k+m: kept, refused with a condition, no pod touched.
        below = admin_cli(server, "spec", "set", "--pods", "5")
        assert below.returncode == 0, below.stderr
        status = wait_status(server, lambda s: conditions(s)["ScaleInRefused"] == "True",
                             "the scale in refused")
        assert "fewer than dataBlocks + parityBlocks = 6" in status["message"]
        assert len(server.pod_pids()) == 6
        assert all(p["state"] == "active" for p in admin(server, "list_pods")["pods"])
        assert admin_cli(server, "spec", "set", "--pods", "6").returncode == 0
        wait_status(server, lambda s: conditions(s)["ScaleInRefused"] == "False"
                    and s["phase"] == "Ready", "the refusal cleared")
        print(f"\nscale 6 -> 7 -> 6 with a restart mid-drain: "
              f"{time.monotonic() - started:.1f} s")
    finally:
        server.stop()
