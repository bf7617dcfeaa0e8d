"""A network partition between the gateway and some pods, under a steady mixed client
load, against a real `kurastore server` (6 pods, erasure 4+2) with two more pods the
test runs itself, each in its own network namespace behind a veth pair (`ip netns`,
where the machine allows it; else behind a TCP proxy the test controls,
tests/support/tcpproxy.py). A cut sets the pod's end of the link down: packets vanish,
connections in flight hang, new ones find no route (the proxy: accepts, never answers).

What it proves:
- one pod cut off: every partition still reaches a write quorum (k+1 of its 6 pods),
  and the client sees no error at all;
- both cut off (m pods of the partitions that hold both): reads and listings all
  succeed; only writes to those partitions are refused, cleanly (503);
- once the partition heals, the healer fills in every shard the cut-off pods missed:
  the disks end holding every referenced shard, and every acknowledged object reads
  back byte-exact.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
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
from support.shards import pod_dirs
from support.tcpproxy import TcpProxy

pytestmark = pytest.mark.integration


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


class NetnsLink:
    """A namespace `ns` holding one pod at `pod_ip`, linked to ours by a veth pair."""

    def __init__(self, n: int) -> None:
        tag = f"{os.getpid() % 10000}{n}"
        self.ns, self.near, self.far = f"ksfault{tag}", f"ksv{tag}a", f"ksv{tag}b"
        # A /30 per link, from the pid, so parallel runs do not collide.
        base = (os.getpid() % 4000) * 8 + n * 4
        net = f"10.{200 + base // 65536}.{base // 256 % 256}.{base % 256}"
        *head, last = net.split(".")
        self.host_ip = ".".join([*head, str(int(last) + 1)])
        self.pod_ip = ".".join([*head, str(int(last) + 2)])

    @classmethod
    def available(cls) -> bool:
        probe = cls(9)
        try:
            probe.create()
        except (subprocess.CalledProcessError, OSError):
            probe.delete()
            return False
        probe.delete()
        return True

    def create(self) -> None:
        ip("netns", "add", self.ns)
        ip("link", "add", self.near, "type", "veth", "peer", "name", self.far)
        ip("link", "set", self.far, "netns", self.ns)
        ip("addr", "add", f"{self.host_ip}/30", "dev", self.near)
        ip("link", "set", self.near, "up")
        ip("netns", "exec", self.ns, "ip", "addr", "add", f"{self.pod_ip}/30", "dev", self.far)
        ip("netns", "exec", self.ns, "ip", "link", "set", self.far, "up")
        ip("netns", "exec", self.ns, "ip", "link", "set", "lo", "up")

    def cut(self) -> None:
        ip("netns", "exec", self.ns, "ip", "link", "set", self.far, "down")

    def heal(self) -> None:
        ip("netns", "exec", self.ns, "ip", "link", "set", self.far, "up")

    def delete(self) -> None:
        subprocess.run(["ip", "link", "del", self.near], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


class ProxyLink:
    """The fallback: the pod on loopback, the gateway talking to it through a TcpProxy."""

    def __init__(self, n: int) -> None:
        self.pod_ip = "127.0.0.1"
        self.proxy: TcpProxy | None = None

    def create(self) -> None:
        pass

    def attach(self, pod: ExternalPod) -> None:
        self.proxy = TcpProxy(pod.host, pod.port).start()

    def cut(self) -> None:
        assert self.proxy is not None
        self.proxy.set_mode("blackhole")

    def heal(self) -> None:
        assert self.proxy is not None
        self.proxy.set_mode("pass")

    def delete(self) -> None:
        if self.proxy is not None:
            self.proxy.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[ServerProcess, list[ExternalPod], list]]:
    use_netns = NetnsLink.available()
    links = [NetnsLink(n) if use_netns else ProxyLink(n) for n in range(2)]
    server = ServerProcess(tmp_path / "data", extra_args=FAST_REPAIR)
    pods: list[ExternalPod] = []
    try:
        server.start()
        for n, link in enumerate(links):
            link.create()
            prefix = ["ip", "netns", "exec", link.ns] if use_netns else []
            pod = ExternalPod(f"pod-far{n}", tmp_path / "far" / f"pod-far{n}",
                              server.data_dir / "cluster.secret", host=link.pod_ip,
                              prefix=prefix)
            pods.append(pod)
            pod.start()
            if isinstance(link, ProxyLink):
                link.attach(pod)
                pod.port = link.proxy.port  # the gateway sees the proxy  # type: ignore[union-attr]
        yield server, pods, links
    finally:
        server.stop()
        for pod, link in zip(pods, links, strict=False):
            if isinstance(link, NetnsLink):
                link.heal()  # the pod must hear its SIGTERM's aftermath, not hang
            pod.stop()
        for link in links:
            link.delete()


PROBES = 16


def probe_writes(server: ServerProcess) -> int:
    """PUTs of PROBES objects above the inline size; returns how many were refused (503),
    and checks that exactly the others are visible, byte-exact."""
    s3 = make_client(server.endpoint)
    stored = {}
    for n in range(PROBES):
        body = os.urandom(100_000 + n)
        try:
            s3.put_object(Bucket="cut", Key=f"probe/{n}", Body=body)
            stored[f"probe/{n}"] = body
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ServiceUnavailable", exc
    listed = {o["Key"] for o in
              s3.list_objects_v2(Bucket="cut", Prefix="probe/").get("Contents", [])}
    assert listed == set(stored)
    for key, body in stored.items():
        assert s3.get_object(Bucket="cut", Key=key)["Body"].read() == body
    return PROBES - len(stored)


def test_partition_from_some_pods(cluster) -> None:
    server, pods, links = cluster
    kind = "network namespaces" if isinstance(links[0], NetnsLink) else "TCP proxies"
    print(f"\npartition made with {kind}")
    add_external_pods(server, pods)
    make_client(server.endpoint).create_bucket(Bucket="cut")
    load = LoadDriver(server.endpoint, "cut", threads=3, seed=41).start()
    try:
        load.wait_ops(20)
        start = time.monotonic()
        links[0].cut()
        load.wait_ops(25)
        both = time.monotonic()
        links[1].cut()
        load.wait_ops(20)
        end = time.monotonic()
        refused = probe_writes(server)
        links[0].heal()
        links[1].heal()
        load.wait_ops(20)
    finally:
        load.stop()
    # A request that started with one pod cut and was still running when the second was
    # cut may fail: it belongs to the next phase.
    assert not load.failures_within(start, both), "errors with one pod cut off"
    failed = load.failures_between(both, end)
    assert {f.op for f in failed} <= {"put", "multipart"}, failed
    assert all("(ServiceUnavailable)" in f.error for f in failed), failed
    # Writes whose partition holds both cut-off pods are refused, the others stored.
    assert 0 < refused < PROBES
    print(f"{load.summary()}; {len(failed)} + {refused} of {PROBES} probe writes refused "
          f"with both cut off, "
          f"worst latency {load.worst_latency(start, end):.2f} s")

    all_pods = {**pod_dirs(server.data_dir), **{p.pod_id: p.data_dir for p in pods}}
    # Usually seconds; once (a CI run) it took over 90 s, not yet explained: the bound
    # here is above the longest suspect cool-down (160 s) a cut-off pod can earn.
    took = wait_for("the healer to fill in what the cut-off pods missed",
                    full_redundancy(server.data_dir, all_pods), timeout_s=200, every_s=0.5)
    assert not invalid_shards(all_pods)
    heal = maintenance(server)["heal"]
    print(f"full redundancy {took:.1f} s after the load stopped; {heal['healed']} shards "
          f"rebuilt")
    assert heal["healed"] > 0
    assert load.verify_all() > 0
