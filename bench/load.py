"""Benchmark: many concurrent keep-alive clients against `kurastore server`.

    python bench/load.py [--connections 1000] [--duration 60] [--runs 1]
                         [--put-ratio 0.3] [--size 4096] [--server-arg=--max-in-flight=64]

Starts a real `kurastore server` (6 pods, 4+2) on a temporary directory, preloads
objects, then runs --connections workers, each on its own keep-alive connection,
doing a small PUT/GET mix (SigV4, UNSIGNED-PAYLOAD) for --duration seconds.
Reports ops/s, p50/p99/p99.9 latency of successful operations, answers by status
(503 SlowDown apart: the gateway's deliberate overload answer), client-side
failures by kind, open connections, the server's RSS over time (gateway + pods,
from /proc, every few seconds) and its CPU time per operation. Limits measured in
the same run: a bare aiohttp server (in-memory dict, same client, same
connections) and the process limits. Figures are medians of --runs runs.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import hashlib
import hmac
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

# Run as a script (python bench/load.py): PYTHONSAFEPATH keeps bench/ off sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from s3_server import ACCESS, SECRET, cpu_seconds, free_port, start_server, tree_pids

REGION = "us-east-1"
BUCKET = "load"
UNSIGNED = "UNSIGNED-PAYLOAD"


class FastSigner:
    """SigV4 header signing for path-style requests without a query (UNSIGNED-PAYLOAD),
    with the signing key cached per day: the load generator must not be the bottleneck."""

    def __init__(self, host: str) -> None:
        self.host = host
        self._day = ""
        self._key = b""

    def _signing_key(self, day: str) -> bytes:
        if day != self._day:
            key = ("AWS4" + SECRET).encode()
            for part in (day, REGION, "s3", "aws4_request"):
                key = hmac.new(key, part.encode(), hashlib.sha256).digest()
            self._day, self._key = day, key
        return self._key

    def headers(self, method: str, path: str) -> dict[str, str]:
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        day = amz_date[:8]
        canonical = (f"{method}\n{path}\n\nhost:{self.host}\nx-amz-content-sha256:{UNSIGNED}\n"
                     f"x-amz-date:{amz_date}\n\nhost;x-amz-content-sha256;x-amz-date\n{UNSIGNED}")
        scope = f"{day}/{REGION}/s3/aws4_request"
        to_sign = (f"AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n"
                   f"{hashlib.sha256(canonical.encode()).hexdigest()}")
        sig = hmac.new(self._signing_key(day), to_sign.encode(), hashlib.sha256).hexdigest()
        return {
            "Host": self.host, "x-amz-date": amz_date, "x-amz-content-sha256": UNSIGNED,
            "Authorization": f"AWS4-HMAC-SHA256 Credential={ACCESS}/{scope}, "
                             f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={sig}",
        }


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: collections.Counter[str] = field(default_factory=collections.Counter)
    slowdown: int = 0
    failures: collections.Counter[str] = field(default_factory=collections.Counter)

    @property
    def ops(self) -> int:
        return len(self.latencies)


async def worker(session: aiohttp.ClientSession, endpoint: str, signer: FastSigner, n: int,
                 keys: int, put_keys: int, body: bytes, put_ratio: float, stop: float,
                 tally: Tally) -> None:
    rng = random.Random(n)
    while time.monotonic() < stop:
        is_put = rng.random() < put_ratio
        if is_put:  # each worker overwrites its own few keys
            path = f"/{BUCKET}/w{n}-{rng.randrange(put_keys)}"
        else:
            path = f"/{BUCKET}/obj-{rng.randrange(keys)}"
        method = "PUT" if is_put else "GET"
        started = time.perf_counter()
        try:
            async with session.request(method, endpoint + path,
                                       headers=signer.headers(method, path),
                                       data=body if is_put else None) as resp:
                payload = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            tally.failures[type(exc).__name__] += 1
            continue
        if status == 503 and b"<Code>SlowDown</Code>" in payload:
            tally.slowdown += 1
        elif status >= 300:
            tally.statuses[str(status)] += 1
        else:
            tally.latencies.append(time.perf_counter() - started)


def established(port: int) -> int:
    """Open TCP connections to `port` on this machine (server side), from /proc/net/tcp."""
    want = f":{port:04X}"
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            count += fields[1].endswith(want) and fields[3] == "01"  # local port, ESTABLISHED
    return count


def tree_rss_mib(root: int) -> tuple[float, float]:
    """(gateway, whole tree) resident MiB."""
    total = gateway = 0.0
    for pid in tree_pids(root):
        try:
            text = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        rss = next((int(line.split()[1]) / 1024 for line in text.splitlines()
                    if line.startswith("VmRSS:")), 0.0)
        total += rss
        if pid == root:
            gateway = rss
    return gateway, total


def db_mib(data: Path | None) -> float:
    """Size of the SQLite metadata (with its WAL): inline objects live there, and the
    gateway's SQLite page caches (bounded) grow with it."""
    if data is None:
        return 0.0
    files = [data / "metadata.db", data / "metadata.db-wal"]
    return sum(f.stat().st_size for f in files if f.exists()) / (1 << 20)


async def sample(root: int, port: int, every_s: float, rows: list[tuple[float, ...]],
                 stop: asyncio.Event, data: Path | None) -> None:
    start = time.monotonic()
    while True:
        gateway, total = tree_rss_mib(root)
        rows.append((time.monotonic() - start, gateway, total, established(port), db_mib(data)))
        try:
            await asyncio.wait_for(stop.wait(), every_s)
            return
        except TimeoutError:
            pass


async def drive(endpoint: str, port: int, root: int | None, args: argparse.Namespace,
                keys: int) -> dict[str, object]:
    """One timed run of the mix; `root` is the server's pid (None: no /proc figures)."""
    signer = FastSigner(f"127.0.0.1:{port}")
    body = os.urandom(args.size)
    connector = aiohttp.TCPConnector(limit=args.connections, limit_per_host=0)
    timeout = aiohttp.ClientTimeout(total=60)
    rows: list[tuple[float, ...]] = []
    tally = Tally()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        done = asyncio.Event()
        sampler = None
        if root:
            sampler = asyncio.create_task(
                sample(root, port, args.sample_every, rows, done, getattr(args, "data", None)))
        pids = tree_pids(root) if root else []
        cpu0, wall0, client0 = cpu_seconds(pids), time.monotonic(), time.process_time()
        stop = wall0 + args.duration
        await asyncio.gather(*(worker(session, endpoint, signer, n, keys, args.put_keys, body,
                                      args.put_ratio, stop, tally)
                               for n in range(args.connections)))
        wall = time.monotonic() - wall0
        cpu = cpu_seconds(tree_pids(root)) - cpu0 if root else 0.0
        client_cpu = time.process_time() - client0
        done.set()
        if sampler:
            await sampler
    lat = sorted(tally.latencies) or [0.0]

    def pct(q: float) -> float:
        return lat[min(len(lat) - 1, int(len(lat) * q))] * 1000

    return {
        "ops/s": tally.ops / wall, "p50 ms": pct(0.5), "p99 ms": pct(0.99), "p99.9 ms": pct(0.999),
        "max ms": lat[-1] * 1000, "ops": tally.ops, "503 SlowDown": tally.slowdown,
        "other statuses": dict(tally.statuses), "client failures": dict(tally.failures),
        "server CPU-ms/op": cpu / max(1, tally.ops) * 1000,
        "client CPU-ms/op": client_cpu / max(1, tally.ops) * 1000, "rss": rows,
    }


async def preload(endpoint: str, port: int, keys: int, size: int) -> None:
    signer = FastSigner(f"127.0.0.1:{port}")
    body = os.urandom(size)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=32)) as session:
        path = f"/{BUCKET}"
        async with session.put(endpoint + path, headers=signer.headers("PUT", path)) as r:
            assert r.status == 200, await r.text()
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            path = f"/{BUCKET}/obj-{i}"
            async with sem, session.put(endpoint + path, data=body,
                                        headers=signer.headers("PUT", path)) as r:
                assert r.status == 200, await r.text()

        await asyncio.gather(*(one(i) for i in range(keys)))


BARE_SERVER = """
import sys
from aiohttp import web
store = {}
async def handle(request):
    if request.method == "PUT":
        store[request.path] = await request.read()
        return web.Response()
    return web.Response(body=store.get(request.path, b"x" * 4096))
app = web.Application()
app.router.add_route("*", "/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
            backlog=4096)
"""


async def bare_limit(args: argparse.Namespace) -> dict[str, object]:
    """The same load against a bare aiohttp server keeping bodies in a dict."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", BARE_SERVER, str(port)])  # noqa: ASYNC220
    try:
        for _ in range(100):
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        quick = argparse.Namespace(**{**vars(args), "duration": min(args.duration, 15.0)})
        return await drive(f"http://127.0.0.1:{port}", port, proc.pid, quick, 1)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)


def print_run(label: str, result: dict[str, object]) -> None:
    print(f"\n{label}")
    for key, value in result.items():
        if key == "rss":
            continue
        print(f"  {key:18s} {value:10.2f}" if isinstance(value, float) else f"  {key:18s} {value}")


async def main_async(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.connections * 2 + 256:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))
    print("machine limits (same run):")
    print(f"  cores                              {os.cpu_count()}")
    print(f"  open files (client, soft/hard)     {resource.getrlimit(resource.RLIMIT_NOFILE)}")
    bare = await bare_limit(args)
    print(f"  bare aiohttp server ops/s          {bare['ops/s']:10.0f}  "
          f"(p99 {bare['p99 ms']:.0f} ms, {bare['server CPU-ms/op']:.3f} server CPU-ms/op, "
          f"{bare['client CPU-ms/op']:.3f} client CPU-ms/op, {args.connections} connections)")
    keys = 1000
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        args.data = Path(tmp) / "data"
        proc = start_server(args.data, port, list(args.server_arg))
        endpoint = f"http://127.0.0.1:{port}"
        try:
            await preload(endpoint, port, keys, args.size)
            for run in range(args.runs):
                result = await drive(endpoint, port, proc.pid, args, keys)
                results.append(result)
                print_run(f"run {run + 1}: {args.connections} connections, {args.duration:.0f} s, "
                          f"{args.put_ratio:.0%} PUT of {args.size} B", result)
                print("  t(s)   gateway RSS MiB   server RSS MiB (all processes)   connections"
                      "   metadata.db MiB")
                for t, gateway, total, conns, db in result["rss"]:
                    print(f"  {t:5.0f}   {gateway:15.0f}   {total:30.0f}   {conns:11d}"
                          f"   {db:15.0f}")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    if len(results) > 1:
        print(f"\nmedian of {len(results)} runs")
        for key in ("ops/s", "p50 ms", "p99 ms", "p99.9 ms", "server CPU-ms/op"):
            print(f"  {key:18s} {statistics.median(r[key] for r in results):10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds per run")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--put-ratio", type=float, default=0.3)
    parser.add_argument("--size", type=int, default=4096, help="object size in bytes")
    parser.add_argument("--put-keys", type=int, default=4,
                        help="keys each connection overwrites (the PUT key space)")
    parser.add_argument("--sample-every", type=float, default=5.0, help="RSS sampling, seconds")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra `kurastore server` flag, e.g. --server-arg=--max-in-flight=64")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
