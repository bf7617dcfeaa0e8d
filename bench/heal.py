"""Benchmark: self-repair of a real `kurastore server` (6 pods, 4+2).

    python bench/heal.py [--mib 512] [--object-mib 8] [--heal-rate 0] [--scrub-rate 0]

Writes --mib MiB of objects, then empties one pod's volume (SIGSTOP, wipe,
SIGKILL: the local platform restarts it empty) and times how long the store
takes to put every shard of that pod back, byte-identical, as the scrubber
finds them missing and the healer rebuilds them. Then times one unthrottled
scrub pass over everything. Prints: data held by the pod, time to full
redundancy (discovery and rebuild), heal throughput in MiB/s of shards
rebuilt, scrub rate in MiB/s of shards verified, and the machine's raw limits
(zfec 4+2 decode+encode of 1 MiB stripes, xxh3 of the same bytes).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3
import xxhash
import zfec
from botocore.config import Config

from kurastore.gateway.admin.client import AdminClient
from kurastore.operator.platforms.ports import free_port

ACCESS, SECRET = "KSBENCHACCESSKEY0001", "bench/secret/0123456789abcdefghijklmnopq"
MiB = 1 << 20


def pod_pid(data: Path, pod_id: str) -> int:
    want = str(data / "pods" / pod_id)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if "kurastore.storage" in args and "--data" in args:
                if args[args.index("--data") + 1] == want:
                    return int(entry.name)
    raise LookupError(pod_id)


def shard_sizes(data: Path, pod_id: str) -> dict[str, int]:
    root = data / "pods" / pod_id / "shards"
    # <partition>/<shard name>, and <partition>/<object_id>/<tag>.<i> on older volumes
    return {str(p.relative_to(root)): p.stat().st_size
            for pattern in ("*/*", "*/*/*") for p in root.glob(pattern) if p.is_file()}


def maintenance(endpoint: str) -> dict:
    async def fetch() -> dict:
        async with AdminClient(endpoint, ACCESS, SECRET) as client:
            return await client.maintenance()

    return asyncio.run(fetch())


def limits() -> tuple[float, float]:
    """(zfec 4+2 rebuild of one data block MiB/s of stripe, xxh3 MiB/s), one core."""
    blocks = [os.urandom(256 * 1024) for _ in range(4)]
    enc, dec = zfec.Encoder(4, 6), zfec.Decoder(4, 6)
    parity = enc.encode(blocks, (4, 5))
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < 1.0:
        got = dec.decode((blocks[1], blocks[2], blocks[3], parity[0]), (1, 2, 3, 4))
        enc.encode(list(got), (4, 5))
        n += 1
    codec = n / (time.perf_counter() - start)
    buf = os.urandom(64 * MiB)
    start = time.perf_counter()
    for _ in range(4):
        xxhash.xxh3_64_intdigest(buf)
    return codec, 256 / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mib", type=int, default=512, help="object data to write")
    ap.add_argument("--object-mib", type=int, default=8)
    ap.add_argument("--heal-rate", default="0", help="kurastore server --heal-rate")
    ap.add_argument("--scrub-rate", default="0", help="kurastore server --scrub-rate")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kura-heal-"))
    data, port = tmp / "data", free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(os.environ, KURASTORE_ACCESS_KEY=ACCESS, KURASTORE_SECRET_KEY=SECRET,
               KURASTORE_LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "WARNING"))
    server = subprocess.Popen(
        [sys.executable, "-m", "kurastore", "server", "--data", str(data), "--listen",
         f"127.0.0.1:{port}", "--scrub-interval", "1", "--scrub-rate", args.scrub_rate,
         "--heal-rate", args.heal_rate],
        env=env, stdout=open(tmp / "server.log", "wb"), stderr=subprocess.STDOUT)
    try:
        run(endpoint, data, args)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
        if "BENCH_KEEP" not in os.environ:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept", tmp)


def run(endpoint: str, data: Path, args: argparse.Namespace) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{endpoint}/_kura/readyz", timeout=2)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ACCESS,
                      aws_secret_access_key=SECRET, region_name="us-east-1",
                      config=Config(max_pool_connections=8))
    s3.create_bucket(Bucket="bench")
    body = os.urandom(args.object_mib * MiB)
    count = max(1, args.mib // args.object_mib)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: s3.put_object(Bucket="bench", Key=f"o{i}", Body=body),
                      range(count)))
    before = shard_sizes(data, "pod-3")
    held = sum(before.values())
    heal_before = maintenance(endpoint)["heal"]
    healed_before, busy_before = heal_before["bytes_rebuilt"], heal_before["busy_s"]

    pid = pod_pid(data, "pod-3")
    os.kill(pid, signal.SIGSTOP)
    for entry in (data / "pods" / "pod-3" / "shards").iterdir():
        shutil.rmtree(entry)
    os.kill(pid, signal.SIGKILL)
    wiped = time.monotonic()
    first = None  # when the first rebuilt byte was reported
    while shard_sizes(data, "pod-3") != before:
        if first is None and maintenance(endpoint)["heal"]["bytes_rebuilt"] > healed_before:
            first = time.monotonic() - wiped
        time.sleep(0.2)
    total = time.monotonic() - wiped
    heal = maintenance(endpoint)["heal"]
    rebuilt = heal["bytes_rebuilt"] - healed_before
    busy = heal["busy_s"] - busy_before

    passes = maintenance(endpoint)["scrub"]["passes"]
    while maintenance(endpoint)["scrub"]["passes"] < passes + 2:  # one whole pass after
        time.sleep(0.2)
    scrub = maintenance(endpoint)["scrub"]
    on_disk = sum(sum(shard_sizes(data, f"pod-{i}").values()) for i in range(6))
    codec, xxh = limits()
    found = min(first or 0.0, total)
    print(f"objects written:          {count} x {args.object_mib} MiB = {count * args.object_mib} "
          f"MiB (4+2, 6 pods)")
    print(f"wiped pod held:           {held / MiB:.1f} MiB in {len(before)} shards")
    print(f"time to full redundancy:  {total:.1f} s (first shard rebuilt after ~{found:.1f} s: "
          f"restart, scrub, retry; then {total - found:.1f} s)")
    print(f"heal throughput:          {rebuilt / MiB / max(busy, 1e-9):.1f} MiB/s of shards "
          f"rebuilt while healing ({rebuilt / MiB:.1f} MiB in {busy:.1f} s busy; the healer "
          f"reads k x that from the other pods)")
    print(f"scrub rate:               {on_disk / MiB / scrub['last_pass_s']:.1f} MiB/s "
          f"({on_disk / MiB:.0f} MiB verified in {scrub['last_pass_s']:.1f} s, unthrottled)")
    print(f"machine limits (1 core):  zfec 4+2 rebuild {codec:.0f} MiB/s of stripe, "
          f"xxh3 {xxh:.0f} MiB/s; {os.cpu_count()} cores shared by gateway and 6 pods")


if __name__ == "__main__":
    main()
