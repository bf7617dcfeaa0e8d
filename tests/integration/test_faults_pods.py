"""Pods that die or hang under a steady mixed client load, against a real `kurastore
server` (6 pods, erasure 4+2, write quorum k+1 = 5).

- kill -9 one pod, then m = 2 pods at once (kept down by killing every restart):
  with one down the client sees no error at all; with m down every read and listing
  still answers and only writes are refused (cleanly: never visible half-done). Once
  the pods are back, the healer restores full redundancy, checked on the pods' disks:
  every shard the records reference is in place and verifies.
- a pod that hangs (SIGSTOP): requests give up on it within a bounded time (hedged
  reads, dropped write streams) instead of its 30 s timeout, and the client sees no
  error; after SIGCONT the healer fills in what it missed.
Both end by reading every acknowledged object back byte-exact.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError
from support.cluster import ACCESS_KEY, SECRET_KEY, ServerProcess
from support.faults import (
    FAST_REPAIR,
    full_redundancy,
    invalid_shards,
    maintenance,
    pods_down,
    wait_for,
)
from support.load import LoadDriver, Mix, make_client
from support.shards import pod_dirs

pytestmark = pytest.mark.integration

MiB = 1 << 20
# A hung pod must cost a request about the hedge delay (<= 2 s) or the straggler grace,
# never the 30 s pod timeout. Generous for a loaded 2-core machine.
HANG_BOUND_S = 10.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("faults-pods") / "data",
                         extra_args=FAST_REPAIR)
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def heal_to_full_redundancy(server: ServerProcess) -> float:
    pods = pod_dirs(server.data_dir)
    took = wait_for("every referenced shard back on its pod's disk",
                    full_redundancy(server.data_dir, pods), timeout_s=90, every_s=0.5)
    assert not invalid_shards(pods)
    return took


def test_killed_pods_one_then_m(server: ServerProcess) -> None:
    make_client(server.endpoint).create_bucket(Bucket="killed")
    load = LoadDriver(server.endpoint, "killed", threads=3, seed=11).start()
    try:
        load.wait_ops(20)
        start = time.monotonic()
        with pods_down(server, ["pod-2"]):
            load.wait_ops(20)
        one_down = time.monotonic()
    finally:
        load.stop()
    assert not load.failures_between(start, one_down), "errors with one pod down"
    took = heal_to_full_redundancy(server)
    heal = maintenance(server)["heal"]
    print(f"\none pod down {one_down - start:.1f} s: {load.summary()}; full redundancy "
          f"{took:.1f} s later, {heal['healed']} shards ({heal['bytes_rebuilt'] / MiB:.1f} MiB) "
          f"rebuilt")
    assert heal["healed"] > 0

    # m pods at once, every object at full redundancy: reads must all succeed.
    start = time.monotonic()
    with pods_down(server, ["pod-0", "pod-4"]):
        load.start()
        load.wait_ops(20)
    m_down = time.monotonic()
    try:
        load.wait_ops(20)  # writes go on once the pods are back
    finally:
        load.stop()
    failed = load.failures_between(start, m_down)
    # Reads and listings never fail; writes need 5 of 6 pods and are refused cleanly.
    assert {f.op for f in failed} <= {"put", "multipart"}, failed
    assert all("(ServiceUnavailable)" in f.error for f in failed), failed
    late = [f for f in load.failures if f.at > m_down + 5]
    assert not late, f"errors after the pods came back: {late[:5]}"
    took = heal_to_full_redundancy(server)
    print(f"m pods down {m_down - start:.1f} s: {len(failed)} writes refused; full redundancy "
          f"{took:.1f} s after the load stopped")
    assert load.verify_all() > 0


def test_hung_pod_costs_a_bounded_wait(server: ServerProcess) -> None:
    make_client(server.endpoint).create_bucket(Bucket="hung")
    load = LoadDriver(server.endpoint, "hung", threads=3, seed=12,
                      mix=Mix(put=4, get=5, list=1, delete=1)).start()
    try:
        load.wait_ops(40)
        before = load.worst_latency(0, time.monotonic())
        pid = server.kill_pod("pod-3", signal.SIGSTOP)
        start = time.monotonic()
        try:
            load.wait_ops(60)
        finally:
            server.kill_pod("pod-3", signal.SIGCONT)
        hung_until = time.monotonic()
        assert server.pod_pids()["pod-3"] == pid  # hung, never restarted
        load.wait_ops(20)
    finally:
        load.stop()
    assert not load.failures_between(start, hung_until), "errors while one pod hung"
    worst = load.worst_latency(start, hung_until)
    print(f"\n{load.summary()}; worst latency {before:.2f} s before the hang, "
          f"{worst:.2f} s during {hung_until - start:.1f} s of it "
          f"({load.count_between(start, hung_until)} requests)")
    assert worst < HANG_BOUND_S
    heal_to_full_redundancy(server)
    assert load.verify_all() > 0



def swift_get(server: ServerProcess, container: str, name: str) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(
            f"{server.endpoint}/auth/v1.0",
            headers={"X-Auth-User": ACCESS_KEY, "X-Auth-Key": SECRET_KEY}), timeout=5) as r:
        token, url = r.headers["X-Auth-Token"], r.headers["X-Storage-Url"]
    with urllib.request.urlopen(urllib.request.Request(
            f"{url}/{container}/{name}", headers={"X-Auth-Token": token}), timeout=30) as r:
        return r.read()


def test_more_than_m_pods_down_answers_s3_errors(server: ServerProcess) -> None:
    """With m + 1 pods down no object above the inline size can be read or written: each
    request gets its S3 error document before any header (503 ServiceUnavailable with
    Retry-After, reads and writes alike: the data comes back with the pods, so clients
    retry; a Swift read a 503 as Swift's proxy), never a 200 cut off mid-body; once the
    pods are back everything reads as before."""
    s3 = make_client(server.endpoint, read_timeout_s=30)
    s3.create_bucket(Bucket="beyond")
    body = os.urandom(3 * MiB + 17)
    s3.put_object(Bucket="beyond", Key="whole", Body=body)
    with pods_down(server, ["pod-1", "pod-3", "pod-5"]):
        with pytest.raises(ClientError) as read:
            s3.get_object(Bucket="beyond", Key="whole")
        with pytest.raises(ClientError) as ranged:
            # A range that reads only blocks on live pods is served; this one needs all.
            s3.get_object(Bucket="beyond", Key="whole", Range=f"bytes=1-{len(body) - 2}")
        with pytest.raises(ClientError) as write:
            s3.put_object(Bucket="beyond", Key="new", Body=os.urandom(MiB))
        with pytest.raises(urllib.error.HTTPError) as swift_read:  # the same object
            swift_get(server, "beyond", "whole")
        # Listings and metadata need no pods.
        assert s3.head_object(Bucket="beyond", Key="whole")["ContentLength"] == len(body)
    assert swift_read.value.code == 503  # as Swift's proxy, when too few fragments answer
    for refused in (read, ranged, write):
        error = refused.value.response
        assert error["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert error["Error"]["Code"] == "ServiceUnavailable"
        assert "storage pods" in error["Error"]["Message"]
        assert error["ResponseMetadata"]["HTTPHeaders"].get("retry-after") == "1"
    assert "new" not in {o["Key"] for o in
                         s3.list_objects_v2(Bucket="beyond").get("Contents", [])}
    assert s3.get_object(Bucket="beyond", Key="whole")["Body"].read() == body
    assert swift_get(server, "beyond", "whole") == body
