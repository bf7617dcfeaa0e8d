"""Storage pod throughput next to the machine's limits, measured in the same run.

    python bench/pod.py [--dir DIR] [--runs 5] [--cpu-only]

Starts a real pod process (`python -m kurastore.storage`) and a bare aiohttp process on
loopback, then prints medians of `--runs` runs:
- shard PUT / GET MiB/s for 1 MiB and 64 MiB shards (one stream, PodClient), next to raw
  disk write+fsync and read MiB/s (this process, same filesystem) and raw aiohttp loopback
  PUT / GET MiB/s (same client settings, a server that discards / serves from memory);
- 4 KiB shard PUT ops/s (fsync'd), one at a time and 16 in flight, next to raw fsync'd
  small-file writes/s (write+fsync; and write+fsync+rename+directory fsync, the least an
  atomic durable create costs), with 1 and 16 threads;
- the pod process's CPU time per 256 KiB shard PUT and GET (the shard of a 1 MiB object
  at 4+2; 8 in flight, from /proc), next to the CPU time of the raw atomic durable create
  of the same bytes (8 threads, this process) and of the way pods pack such shards
  (O_DIRECT appends, one fdatasync per 8).
Targets (issue 3): large PUT >= 80% of disk write+fsync; GET >= 80% of loopback GET.
Reads are served from the page cache on both sides (caches are not dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import mmap
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
from aiohttp import web

from kurastore.operator.platforms.ports import free_port
from kurastore.storage import PodClient, ShardId

MiB = 1 << 20
SECRET = b"bench-pod-secret-0123456789abcdef"
LARGE = {MiB: 96, 64 * MiB: 4}  # shard size -> shards per run
SMALL, SMALL_OPS = 4096, 400
CPU_SHARD, CPU_OPS, CPU_IN_FLIGHT = 256 << 10, 600, 8
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the bare aiohttp process: the loopback limit -------------------------------------------


def run_raw_server(port: int) -> None:
    blob = memoryview(os.urandom(64 * MiB))

    async def sink(request: web.Request) -> web.Response:
        n = 0
        while chunk := await request.content.readany():
            n += len(chunk)
        return web.json_response({"size": n}, status=201)

    async def serve(request: web.Request) -> web.StreamResponse:
        # Written in 1 MiB pieces: aiohttp's fastest way to send a body from memory (one
        # 64 MiB write makes asyncio copy the unsent rest into its buffer).
        size = int(request.match_info["size"])
        resp = web.StreamResponse()
        resp.content_length = size
        await resp.prepare(request)
        for off in range(0, size, MiB):
            await resp.write(blob[off : min(size, off + MiB)])
        return resp

    app = web.Application()
    app.router.add_put("/sink", sink)
    app.router.add_get("/blob/{size}", serve)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# -- raw disk ---------------------------------------------------------------------------------


def disk_write(directory: Path, data: bytes, count: int) -> float:
    view = memoryview(data)
    start = time.perf_counter()
    for i in range(count):
        fd = os.open(directory / f"raw-{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        for off in range(0, len(view), MiB):
            os.write(fd, view[off : off + MiB])
        os.fsync(fd)
        os.close(fd)
    return time.perf_counter() - start


def disk_read(directory: Path, count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        with open(directory / f"raw-{i}", "rb", buffering=0) as f:
            while f.read(MiB):
                pass
    return time.perf_counter() - start


def small_file(directory: Path, data: bytes, atomic: bool) -> None:
    name = uuid.uuid4().hex
    fd = os.open(directory / ("t-" + name if atomic else name), os.O_WRONLY | os.O_CREAT, 0o640)
    os.write(fd, data)
    os.fsync(fd)
    os.close(fd)
    if atomic:
        os.rename(directory / ("t-" + name), directory / name)
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        os.fsync(dfd)
        os.close(dfd)


def small_files_per_s(directory: Path, threads: int, atomic: bool) -> float:
    directory.mkdir(exist_ok=True)
    data = os.urandom(SMALL)
    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: small_file(directory, data, atomic), range(SMALL_OPS)))
    elapsed = time.perf_counter() - start
    shutil.rmtree(directory)
    return SMALL_OPS / elapsed


def raw_create_cpu_ms(directory: Path, data: bytes, threads: int, count: int) -> float:
    """CPU ms (this process, user + system) per atomic durable create of `data`."""
    directory.mkdir(exist_ok=True)
    before = resource.getrusage(resource.RUSAGE_SELF)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: small_file(directory, data, True), range(count)))
    after = resource.getrusage(resource.RUSAGE_SELF)
    shutil.rmtree(directory)
    spent = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return spent / count * 1000


def raw_append_cpu_ms(directory: Path, data: bytes, batch: int, count: int) -> float:
    """CPU ms (this process) per record appended the way pods pack small shards: O_DIRECT
    from page-aligned buffers, `batch` records per pwritev and fdatasync."""
    directory.mkdir(exist_ok=True)
    aligned = -(-len(data) // 4096) * 4096
    stage = mmap.mmap(-1, aligned)
    stage[: len(data)] = data
    fd = os.open(directory / "pack", os.O_WRONLY | os.O_CREAT | getattr(os, "O_DIRECT", 0),
                 0o640)
    before = resource.getrusage(resource.RUSAGE_SELF)
    try:
        offset = 0
        for _ in range(count // batch):
            offset += os.pwritev(fd, [stage] * batch, offset)
            os.fdatasync(fd)
    finally:
        os.close(fd)
        stage.close()
    after = resource.getrusage(resource.RUSAGE_SELF)
    shutil.rmtree(directory)
    spent = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return spent / (count // batch * batch) * 1000


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# -- over HTTP --------------------------------------------------------------------------------


async def timed(work: Awaitable[object]) -> float:
    """Seconds to finish `work` (a coroutine does nothing until awaited)."""
    start = time.perf_counter()
    await work
    return time.perf_counter() - start


async def in_flight(n: int, jobs: list[Callable[[], Awaitable[object]]]) -> None:
    sem = asyncio.Semaphore(n)

    async def one(job: Callable[[], Awaitable[object]]) -> None:
        async with sem:
            await job()

    await asyncio.gather(*(one(j) for j in jobs))


async def slices(data: bytes) -> AsyncIterator[memoryview]:
    view = memoryview(data)
    for off in range(0, len(view), MiB):
        yield view[off : off + MiB]


def median(xs: list[float]) -> float:
    return statistics.median(xs)


async def wait_ready(url: str, path: str) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(300):
            try:
                async with s.get(url + path) as r:
                    if r.status < 500:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def spawn(workdir: Path, pod_port: int, raw_port: int) -> list[subprocess.Popen[bytes]]:
    secret_file = workdir / "secret"
    secret_file.write_bytes(SECRET)
    return [
        subprocess.Popen([sys.executable, "-m", "kurastore.storage", "--data",
                          str(workdir / "pod"), "--listen", f"127.0.0.1:{pod_port}",
                          "--secret-file", str(secret_file), "--log-level", "WARNING"]),
        subprocess.Popen([sys.executable, __file__, "--raw-server", str(raw_port)]),
    ]


class Bench:
    def __init__(self, workdir: Path, pod_url: str, raw_url: str, pod_pid: int) -> None:
        self.workdir, self.pod_url, self.raw_url = workdir, pod_url, raw_url
        self.pod_pid = pod_pid
        self.client = PodClient(SECRET)
        self.raw = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=64),
            auto_decompress=False, read_bufsize=MiB,
        )

    async def close(self) -> None:
        await self.client.close()
        await self.raw.close()

    async def loop_put(self, data: bytes, count: int) -> None:
        for _ in range(count):
            headers = {"Content-Length": str(len(data))}
            async with self.raw.put(self.raw_url + "/sink", data=slices(data),
                                    headers=headers) as resp:
                await resp.read()

    async def loop_get(self, size: int, count: int, assemble: bool) -> None:
        for _ in range(count):
            async with self.raw.get(f"{self.raw_url}/blob/{size}") as resp:
                if assemble:
                    assert len(await resp.read()) == size
                else:
                    async for _chunk in resp.content.iter_chunked(MiB):
                        pass

    async def pod_put(self, partition: int, ids: list[ShardId], data: bytes) -> None:
        for sid in ids:
            await self.client.put_shard(self.pod_url, partition, sid, data)

    async def pod_get(self, partition: int, ids: list[ShardId], size: int) -> None:
        for sid in ids:
            got = await self.client.read_shard(self.pod_url, partition, sid)
            assert len(got) == size

    async def pod_stream(self, partition: int, ids: list[ShardId]) -> None:
        for sid in ids:
            async for _chunk in self.client.stream_shard(self.pod_url, partition, sid):
                pass

    async def large(self, size: int, count: int, runs: int) -> dict[str, float]:
        data = os.urandom(size)
        total = size * count / MiB
        rawdir = self.workdir / "raw"
        rawdir.mkdir(exist_ok=True)
        r: dict[str, list[float]] = {
            k: [] for k in ("disk_w", "disk_r", "lo_put", "lo_get", "lo_read", "put", "get",
                            "read")
        }
        for run in range(runs):
            r["disk_w"].append(total / await asyncio.to_thread(disk_write, rawdir, data, count))
            r["disk_r"].append(total / await asyncio.to_thread(disk_read, rawdir, count))
            r["lo_put"].append(total / await timed(self.loop_put(data, count)))
            r["lo_get"].append(total / await timed(self.loop_get(size, count, False)))
            r["lo_read"].append(total / await timed(self.loop_get(size, count, True)))
            ids = [ShardId(uuid.uuid4().hex, "b", 0) for _ in range(count)]
            r["put"].append(total / await timed(self.pod_put(run, ids, data)))
            r["get"].append(total / await timed(self.pod_stream(run, ids)))
            r["read"].append(total / await timed(self.pod_get(run, ids, size)))
            for sid in ids:
                await self.client.delete_shard(self.pod_url, run, sid)
        shutil.rmtree(rawdir)
        return {k: median(v) for k, v in r.items()}

    async def small(self, runs: int) -> dict[str, float]:
        r: dict[str, list[float]] = {
            k: [] for k in ("pod1", "pod16", "raw1", "raw16", "atomic1", "atomic16")
        }
        payload = os.urandom(SMALL)
        for run in range(runs):
            for n in (1, 16):
                ids = [ShardId(uuid.uuid4().hex, "s", 0) for _ in range(SMALL_OPS)]
                jobs = [self._put_job(100 + run, sid, payload) for sid in ids]
                r[f"pod{n}"].append(SMALL_OPS / await timed(in_flight(n, jobs)))
                for sid in ids:
                    await self.client.delete_shard(self.pod_url, 100 + run, sid)
                small_dir = self.workdir / "small"
                r[f"raw{n}"].append(
                    await asyncio.to_thread(small_files_per_s, small_dir, n, False))
                r[f"atomic{n}"].append(
                    await asyncio.to_thread(small_files_per_s, small_dir, n, True))
        return {k: median(v) for k, v in r.items()}

    async def shard_cpu(self, runs: int) -> dict[str, float]:
        """Pod CPU ms per shard PUT and GET, and the raw create's CPU ms, medians."""
        r: dict[str, list[float]] = {"put": [], "get": [], "raw": [], "append": []}
        payload = os.urandom(CPU_SHARD)
        for run in range(runs):
            partition = 200 + run
            ids = [ShardId(uuid.uuid4().hex, "c", 0) for _ in range(CPU_OPS)]
            puts = [self._put_job(partition, sid, payload) for sid in ids]
            gets = [self._get_job(partition, sid) for sid in ids]
            for key, jobs in (("put", puts), ("get", gets)):
                before = process_cpu_s(self.pod_pid)
                await in_flight(CPU_IN_FLIGHT, jobs)
                r[key].append((process_cpu_s(self.pod_pid) - before) / CPU_OPS * 1000)
            for sid in ids:
                await self.client.delete_shard(self.pod_url, partition, sid)
            r["raw"].append(await asyncio.to_thread(
                raw_create_cpu_ms, self.workdir / "cpu", payload, CPU_IN_FLIGHT, CPU_OPS))
            r["append"].append(await asyncio.to_thread(
                raw_append_cpu_ms, self.workdir / "cpu", payload, CPU_IN_FLIGHT, CPU_OPS))
        return {k: median(v) for k, v in r.items()}

    def _get_job(self, partition: int, sid: ShardId) -> Callable[[], Awaitable[object]]:
        return lambda: self.client.read_shard(self.pod_url, partition, sid)

    def _put_job(
        self, partition: int, sid: ShardId, data: bytes
    ) -> Callable[[], Awaitable[object]]:
        return lambda: self.client.put_shard(self.pod_url, partition, sid, data)


async def bench(workdir: Path, runs: int, cpu_only: bool = False) -> None:
    pod_port, raw_port = free_port(), free_port()
    procs = await asyncio.to_thread(spawn, workdir, pod_port, raw_port)
    b = Bench(workdir, f"http://127.0.0.1:{pod_port}", f"http://127.0.0.1:{raw_port}",
              procs[0].pid)
    try:
        await wait_ready(b.pod_url, "/readyz")
        await wait_ready(b.raw_url, "/blob/1")
        if not cpu_only:
            rows = [(size, await b.large(size, count, runs)) for size, count in LARGE.items()]
            report(rows, await b.small(runs), runs)
        report_cpu(await b.shard_cpu(runs))
    finally:
        await b.close()
        for p in procs:
            p.terminate()
            p.wait()


def report(rows: list[tuple[int, dict[str, float]]], small: dict[str, float], runs: int) -> None:
    print(f"\nstorage pod over loopback, one stream, medians of {runs} runs "
          f"({os.cpu_count()} cores); MiB/s\n")
    print(f"{'shard':>6} | {'disk w+fsync':>12} {'loop PUT':>8} {'pod PUT':>8} {'/disk':>6} | "
          f"{'disk read':>9} | {'loop GET':>8} {'pod GET':>8} {'/loop':>6} | "
          f"{'loop read()':>11} {'read_shard':>10} {'/loop':>6}")
    for size, m in rows:
        label = f"{size // MiB} MiB"
        print(f"{label:>6} | {m['disk_w']:>12.0f} {m['lo_put']:>8.0f} {m['put']:>8.0f} "
              f"{m['put'] / m['disk_w']:>6.0%} | {m['disk_r']:>9.0f} | {m['lo_get']:>8.0f} "
              f"{m['get']:>8.0f} {m['get'] / m['lo_get']:>6.0%} | {m['lo_read']:>11.0f} "
              f"{m['read']:>10.0f} {m['read'] / m['lo_read']:>6.0%}")
    print("  GET = streamed (stream_shard / iter_chunked, bytes dropped); read = the whole shard"
          " as one bytes (read_shard / resp.read())")
    print("\n4 KiB shards, ops/s, fsync'd   | x1 in flight | x16 in flight")
    print(f"pod PUT                        | {small['pod1']:>12.0f} | {small['pod16']:>13.0f}")
    print(f"raw write+fsync                | {small['raw1']:>12.0f} | {small['raw16']:>13.0f}")
    print(f"raw write+fsync+rename+dirsync | {small['atomic1']:>12.0f} | "
          f"{small['atomic16']:>13.0f}")


def report_cpu(cpu: dict[str, float]) -> None:
    print(f"\n{CPU_SHARD >> 10} KiB shards, {CPU_IN_FLIGHT} in flight, CPU ms per shard")
    print(f"pod PUT (whole body, packed, durable)  | {cpu['put']:>6.3f}")
    print(f"pod GET (whole shard)                  | {cpu['get']:>6.3f}")
    print(f"raw write+fsync+rename+dirsync         | {cpu['raw']:>6.3f}")
    print(f"raw O_DIRECT append, fdatasync per {CPU_IN_FLIGHT}   | {cpu['append']:>6.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where the pod and raw files go (default: a temp dir)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cpu-only", action="store_true",
                        help="only the CPU ms per 256 KiB shard PUT and GET")
    parser.add_argument("--raw-server", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_server:
        run_raw_server(args.raw_server)
        return
    if args.dir:
        Path(args.dir).mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="kura-bench-pod-", dir=args.dir))
    try:
        asyncio.run(bench(workdir, max(5, args.runs), args.cpu_only))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
