"""Benchmark: kurastore server (6 pods, 4+2) over S3, next to the machine's limits.

    python bench/s3_server.py [--runs 5] [--quick] [--big-uploads] [--many-uploads]
                              [--big-downloads]

Starts a real `kurastore server` on a temporary directory, drives it with an
aiohttp load generator signing requests with SigV4 (UNSIGNED-PAYLOAD, as
aws-cli does over TLS-less endpoints with payload signing off), and reports for
64 MiB, 1 MiB and 4 KiB objects: MiB/s or ops/s, p50/p99 latency and the
server's CPU time per unit of work (gateway + pods, from /proc), the figure to
hold on a shared 2-core machine, and the gateway process's share of it (steadier
than the total: the pods' time is mostly the kernel's, which swings with the
VM's page cache). Beside the client's p50/p99, the bound of the gateway latency
histogram's bucket that holds its own p50/p99 (handler start to answer): on 2 cores
shared with the load generator, most of a small request's latency is waiting for a turn,
not work. Limits measured in the same run: raw MD5, raw
zfec 4+2 encode and the same code by ISA-L (what the gateway uses when libisal is
installed), raw xxh3, disk write+fsync through the page cache and with O_DIRECT
(what pods use for large shards), and a bare aiohttp server's receive and send cost.
Every figure is the median of --runs runs.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import xxhash
import zfec
from aiohttp import web
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kurastore.operator.platforms.ports import free_port

ACCESS, SECRET = "KSBENCHACCESSKEY0001", "bench/secret/0123456789abcdefghijklmnopq"
MiB = 1 << 20
CLK = os.sysconf("SC_CLK_TCK")


# --- CPU accounting ------------------------------------------------------------

def tree_pids(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, [])
    return out


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# --- limits ---------------------------------------------------------------------

def limit_md5(buf: bytes) -> float:
    t = time.perf_counter()
    hashlib.md5(buf).digest()
    return len(buf) / MiB / (time.perf_counter() - t)


def limit_aes_ctr(buf: bytes) -> float:
    """MiB/s of AES-256-CTR over `buf` in 4 MiB stripes, as the gateway encrypts."""
    from kurastore.gateway.objects.encryption import keystream_xor

    key, t = os.urandom(32), time.perf_counter()
    for offset in range(0, len(buf), 4 * MiB):
        keystream_xor(key, "0", offset, memoryview(buf)[offset:offset + 4 * MiB])
    return len(buf) / MiB / (time.perf_counter() - t)


def limit_xxh3(buf: bytes) -> float:
    t = time.perf_counter()
    xxhash.xxh3_64_intdigest(buf)
    return len(buf) / MiB / (time.perf_counter() - t)


def limit_isal(buf: bytes, k: int = 4, m: int = 2, stripe: int = MiB) -> float:
    """zfec's code computed by ISA-L, as the gateway does when libisal is installed."""
    from kurastore.erasure._isal import isal_code

    code = isal_code(k, k + m)
    if code is None:
        return float("nan")
    view, block = memoryview(buf), stripe // k
    t = time.perf_counter()
    for off in range(0, len(buf), stripe):
        code.encode_parity([view[off + i * block: off + (i + 1) * block] for i in range(k)])
    return len(buf) / MiB / (time.perf_counter() - t)


def limit_disk(directory: Path, direct: bool, size: int = 256 * MiB) -> tuple[float, float]:
    """(MiB/s, CPU-s/GiB) writing `size` bytes in 4 MiB writes plus fsync, as a pod does
    for a large shard (O_DIRECT) or through the page cache."""
    import mmap

    chunk = mmap.mmap(-1, 4 * MiB)  # page-aligned, as O_DIRECT needs
    chunk.write(os.urandom(4 * MiB))
    path = directory / f"disk-limit-{os.getpid()}"
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (os.O_DIRECT if direct else 0)
    c0, t0 = time.process_time(), time.perf_counter()
    fd = os.open(path, flags, 0o600)
    try:
        for _ in range(size // (4 * MiB)):
            os.write(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
        path.unlink()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return size / MiB / wall, cpu / (size / (1 << 30))


def filesystem_of(path: Path) -> str:
    """The type, device and journal of the filesystem holding `path`: per-shard file costs
    depend on it (ext4 without a journal scans recently freed inodes on every create)."""
    best, fs_type, device = "", "?", "?"
    for line in Path("/proc/self/mounts").read_text().splitlines():
        dev, mount, kind = line.split()[:3]
        if str(path.resolve()).startswith(mount) and len(mount) > len(best):
            best, fs_type, device = mount, kind, dev
    journal = ""
    if fs_type == "ext4":  # jbd2 lists the journal of each ext4 that has one
        name = Path(device).resolve().name
        journals = os.listdir("/proc/fs/jbd2") if os.path.isdir("/proc/fs/jbd2") else []
        journal = ", journal" if any(j.startswith(f"{name}-") for j in journals) else ", no journal"
    return f"{fs_type} on {device}{journal}"


def limit_zfec(buf: bytes, k: int = 4, m: int = 2, stripe: int = MiB) -> float:
    enc = zfec.Encoder(k, k + m)
    block = stripe // k
    t = time.perf_counter()
    for off in range(0, len(buf), stripe):
        blocks = [buf[off + i * block: off + (i + 1) * block] for i in range(k)]
        enc.encode(blocks, list(range(k, k + m)))
    return len(buf) / MiB / (time.perf_counter() - t)


async def limit_aiohttp(size: int, rounds: int) -> tuple[float, float]:
    """CPU-s/GiB of a bare aiohttp server receiving and sending `size` bodies
    (this process is both ends, so the figure is an upper bound of the server side)."""
    payload = os.urandom(size)

    async def recv(request: web.Request) -> web.Response:
        async for _ in request.content.iter_chunked(MiB):
            pass
        return web.Response(status=200)

    async def send(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(size)})
        await resp.prepare(request)
        view = memoryview(payload)
        for off in range(0, size, MiB):
            await resp.write(view[off:off + MiB])
        return resp

    app = web.Application(client_max_size=size * 2)
    app.router.add_put("/r", recv)
    app.router.add_get("/s", send)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    out = []
    async with aiohttp.ClientSession() as session:
        for method in ("PUT", "GET"):
            t0 = time.process_time()
            for _ in range(rounds):
                if method == "PUT":
                    async with session.put(f"http://127.0.0.1:{port}/r", data=_chunks(payload),
                                           headers={"Content-Length": str(size)}) as r:
                        await r.read()
                else:
                    async with session.get(f"http://127.0.0.1:{port}/s") as r:
                        async for _ in r.content.iter_chunked(MiB):
                            pass
            out.append((time.process_time() - t0) / (rounds * size / (1 << 30)))
    await runner.cleanup()
    return out[0], out[1]


async def _chunks(payload: bytes, chunk: int = MiB):
    view = memoryview(payload)
    for off in range(0, len(view), chunk):
        yield view[off:off + chunk]


# --- load generator --------------------------------------------------------------

class UnsignedPayloadAuth(S3SigV4Auth):
    """SigV4 with UNSIGNED-PAYLOAD, so the load generator does not hash bodies."""

    def _should_sha256_sign_payload(self, request) -> bool:
        return False


class Signer:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.auth = UnsignedPayloadAuth(Credentials(ACCESS, SECRET), "s3", "us-east-1")

    def headers(self, method: str, path: str, extra: dict[str, str] | None = None) -> dict:
        req = AWSRequest(method=method, url=self.endpoint + path, headers=dict(extra or {}))
        self.auth.add_auth(req)
        return dict(req.headers.items())


async def timed_ops(session, signer, method, paths, body: bytes | None, concurrency: int,
                    put_headers: dict[str, str] | None = None):
    latencies: list[float] = []
    queue = list(paths)

    async def worker() -> None:
        while queue:
            path = queue.pop()
            extra = ({"Content-Length": str(len(body)), **(put_headers or {})}
                     if body is not None else None)
            headers = signer.headers(method, path, extra)
            t = time.perf_counter()
            data = _chunks(body) if body is not None and len(body) > MiB else body
            async with session.request(method, signer.endpoint + path, data=data,
                                       headers=headers) as resp:
                if method == "GET":
                    async for _ in resp.content.iter_chunked(MiB):
                        pass
                else:
                    await resp.read()
                if resp.status >= 300:
                    raise RuntimeError(f"{method} {path}: {resp.status} {await resp.text()}")
            latencies.append(time.perf_counter() - t)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


SERVER_OPS = {"PUT": "PutObject", "GET": "GetObject"}
HISTOGRAM = "kurastore_request_duration_seconds_bucket{"


async def latency_histogram(session: aiohttp.ClientSession, endpoint: str,
                            op: str) -> dict[float, float]:
    """The gateway's own latency histogram of S3 `op`: cumulative count by bucket bound (s)."""
    async with session.get(endpoint + "/_kura/metrics") as resp:
        text = await resp.text()
    counts: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith(HISTOGRAM) and f'op="{op}"' in line and 'protocol="s3"' in line:
            labels, _, value = line.rpartition(" ")
            bound = labels.split('le="', 1)[1].split('"', 1)[0]
            counts[float(bound)] = float(value)
    return counts


def bucket_bound_ms(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """Upper bound (ms) of the histogram bucket holding quantile q of the requests counted
    between two scrapes: the server's own time for them, from handler start to answer."""
    bounds = sorted(after)
    total = after[bounds[-1]] - before.get(bounds[-1], 0.0)
    for bound in bounds:
        if total and after[bound] - before.get(bound, 0.0) >= q * total:
            return bound * 1000
    return float("nan")


async def run_case(endpoint: str, server_pid: int, label: str, size: int, count: int,
                   concurrency: int, put_headers: dict[str, str] | None = None
                   ) -> dict[str, float]:
    signer = Signer(endpoint)
    body = os.urandom(size)
    conn = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=conn) as session:
        paths = [f"/bench/{label}-{i}" for i in range(count)]
        result: dict[str, float] = {}
        for method in ("PUT", "GET"):
            pids = tree_pids(server_pid)
            h0 = await latency_histogram(session, endpoint, SERVER_OPS[method])
            c0, g0, t0 = cpu_seconds(pids), cpu_seconds([server_pid]), time.perf_counter()
            lat = await timed_ops(session, signer, method, list(paths),
                                  body if method == "PUT" else None, concurrency, put_headers)
            wall = time.perf_counter() - t0
            cpu = cpu_seconds(tree_pids(server_pid)) - c0
            gateway = cpu_seconds([server_pid]) - g0
            h1 = await latency_histogram(session, endpoint, SERVER_OPS[method])
            lat.sort()
            result[f"{method} MiB/s"] = count * size / MiB / wall
            result[f"{method} ops/s"] = count / wall
            result[f"{method} p50 ms"] = lat[len(lat) // 2] * 1000
            result[f"{method} p99 ms"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
            # The server's own share of that latency (handler start to answer), from its
            # latency histogram: the rest is waiting for a turn on a saturated machine.
            result[f"{method} server p50 <= ms"] = bucket_bound_ms(h0, h1, 0.5)
            result[f"{method} server p99 <= ms"] = bucket_bound_ms(h0, h1, 0.99)
            result[f"{method} CPU-s/GiB"] = cpu / (count * size / (1 << 30))
            result[f"{method} CPU-ms/op"] = cpu / count * 1000
            result[f"{method} gateway CPU-ms/op"] = gateway / count * 1000
        return result


def start_server(data: Path, port: int, extra: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """`kurastore server` on `data` (its log beside it, in server.log), once ready."""
    env = dict(os.environ, KURASTORE_ACCESS_KEY=ACCESS, KURASTORE_SECRET_KEY=SECRET,
               # The server's own default (INFO: the gateway logs every request), as a
               # user runs it; BENCH_LOG_LEVEL=WARNING measures it without the log.
               KURASTORE_LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "INFO"),
               PYTHONSAFEPATH="1")
    data.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [sys.executable, "-P", "-m", "kurastore", "server", "--data", str(data),
         "--listen", f"127.0.0.1:{port}", *extra],
        stdout=subprocess.DEVNULL, stderr=open(data.parent / "server.log", "wb"), env=env,
    )
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_kura/readyz", timeout=1):
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not start; see server.log")


def med(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


async def main_async(args: argparse.Namespace) -> None:
    buf = os.urandom(256 * MiB)
    limits = {
        "md5 MiB/s": statistics.median(limit_md5(buf) for _ in range(3)),
        "xxh3 MiB/s": statistics.median(limit_xxh3(buf) for _ in range(3)),
        "zfec 4+2 encode MiB/s": statistics.median(limit_zfec(buf) for _ in range(3)),
        "ISA-L 4+2 encode MiB/s": statistics.median(limit_isal(buf) for _ in range(3)),
    }
    if args.sse:
        limits["AES-256-CTR MiB/s"] = statistics.median(limit_aes_ctr(buf) for _ in range(3))
    scratch = Path(args.dir) if args.dir else Path(tempfile.gettempdir())
    scratch.mkdir(parents=True, exist_ok=True)
    for direct in (False, True):
        runs = [limit_disk(scratch, direct) for _ in range(3)]
        name = "O_DIRECT" if direct else "buffered"
        limits[f"disk write+fsync {name} MiB/s"] = statistics.median(r[0] for r in runs)
        limits[f"disk write+fsync {name} CPU-s/GiB"] = statistics.median(r[1] for r in runs)
    recv, send = await limit_aiohttp(64 * MiB, 4)
    limits["bare aiohttp receive CPU-s/GiB"] = recv
    limits["bare aiohttp send CPU-s/GiB"] = send
    del buf
    from kurastore.erasure._isal import isal_available

    print(f"codec in use: {'ISA-L (zfec code)' if isal_available() else 'zfec'}"
          + ("" if isal_available() else " (libisal2 missing: scripts/system-deps.sh --runtime)"))
    print("machine limits (same run):")
    for k, v in limits.items():
        print(f"  {k:34s} {v:10.2f}")

    cases = [("64MiB", 64 * MiB, 8, 2), ("1MiB", MiB, 200, 8), ("4KiB", 4096, 2000, 32)]
    if args.quick:
        cases = [("64MiB", 64 * MiB, 3, 2), ("1MiB", MiB, 50, 8), ("4KiB", 4096, 400, 32)]
    # --sse: every PUT asks for SSE-S3, so GETs decrypt too.
    put_headers = {"x-amz-server-side-encryption": "AES256"} if args.sse else None
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        print(f"data on {tmp} ({filesystem_of(Path(tmp))})")
        port = free_port()
        proc = start_server(Path(tmp) / "data", port)
        endpoint = f"http://127.0.0.1:{port}"
        try:
            signer = Signer(endpoint)
            async with aiohttp.ClientSession() as s, s.put(
                endpoint + "/bench", headers=signer.headers("PUT", "/bench")
            ) as r:
                assert r.status == 200, await r.text()
            for label, size, count, conc in cases:
                rows = []
                for run in range(args.runs):
                    rows.append(await run_case(endpoint, proc.pid, f"{label}-{run}", size,
                                               count, conc, put_headers))
                print(f"\n{label} objects{' (SSE-S3)' if args.sse else ''}: {count} per run, "
                      f"{conc} concurrent, median of {args.runs} runs")
                for key in rows[0]:
                    print(f"  {key:22s} {med(rows, key):10.2f}")
            if args.big_uploads:
                await big_uploads(endpoint, proc.pid)
            if args.many_uploads:
                await big_uploads(endpoint, proc.pid, n=128, size=10 * MiB)
            if args.big_downloads:
                await big_downloads(endpoint, proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


class PeakRss:
    """The peak RSS of a process while the block runs (sampled every 0.2 s)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0.0
        self._stop = asyncio.Event()

    async def _watch(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            await asyncio.sleep(0.2)

    async def __aenter__(self) -> PeakRss:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        await self._task


async def big_uploads(endpoint: str, server_pid: int, n: int = 8, size: int = 1 << 30) -> None:
    """Gateway RSS during n concurrent uploads of `size` bytes each (the write budget,
    gateway/objects/budget.py, bounds the stripes they hold)."""
    signer = Signer(endpoint)
    chunk = os.urandom(MiB)

    async def body():
        for _ in range(size // MiB):
            yield chunk

    conn = aiohttp.TCPConnector(limit=n)
    start = time.perf_counter()
    async with aiohttp.ClientSession(connector=conn) as session, PeakRss(server_pid) as rss:
        async def one(i: int) -> None:
            path = f"/bench/huge-{i}"
            headers = signer.headers("PUT", path, {"Content-Length": str(size)})
            async with session.put(endpoint + path, data=body(), headers=headers) as r:
                assert r.status == 200, await r.text()

        await asyncio.gather(*(one(i) for i in range(n)))
    rate = n * size / MiB / (time.perf_counter() - start)
    print(f"\ngateway peak RSS during {n} concurrent {size >> 20} MiB uploads: {rss.peak:.0f} MiB "
          f"({rate:.0f} MiB/s)")


async def big_downloads(endpoint: str, server_pid: int, n: int = 16, size: int = 64 * MiB,
                        rounds: int = 2) -> None:
    """Gateway RSS and MiB/s while n clients each GET a `size`-byte object, `rounds`
    times (the read budget, gateway/objects/budget.py, is what bounds it)."""
    signer = Signer(endpoint)
    body = os.urandom(size)
    conn = aiohttp.TCPConnector(limit=n)
    async with aiohttp.ClientSession(connector=conn) as session:
        paths = [f"/bench/wide-{i}" for i in range(n)]
        await timed_ops(session, signer, "PUT", paths, body, 4)
        start = time.perf_counter()
        async with PeakRss(server_pid) as rss:
            await timed_ops(session, signer, "GET", paths * rounds, None, n)
        rate = n * rounds * size / MiB / (time.perf_counter() - start)
    print(f"\ngateway peak RSS during {n} concurrent {size >> 20} MiB GETs: {rss.peak:.0f} MiB "
          f"({rate:.0f} MiB/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer objects per run")
    parser.add_argument("--dir", default=None,
                        help="put the server's data (and the disk limit's file) here, to "
                        "measure the volume the pods would use (default: the temp dir)")
    parser.add_argument("--sse", action="store_true",
                        help="PUT every object with SSE-S3 (and print raw AES-256-CTR)")
    parser.add_argument("--big-uploads", action="store_true",
                        help="also measure gateway RSS during 8 concurrent 1 GiB uploads")
    parser.add_argument("--many-uploads", action="store_true",
                        help="also measure gateway RSS during 128 concurrent 10 MiB uploads")
    parser.add_argument("--big-downloads", action="store_true",
                        help="also measure gateway RSS during 16 concurrent 64 MiB GETs")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
