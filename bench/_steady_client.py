"""The S3 side of bench/rebalance.py: a mixed-size data set and a steady background client.

Rules:
- Object bodies are slices of one random buffer, so a body is known again from its key
  alone: the background client checks every GET byte-exact (MD5) without keeping copies.
- The background client is open loop: one request every 1/rate seconds whatever the
  server does (at most `max_in_flight` outstanding; a tick with no room counts as
  skipped), so a slow server shows as latency, not as fewer samples.
- Latencies and errors are filed under the phase current when the request started.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
from s3_server import Signer

MiB = 1 << 20
KiB = 1 << 10
# One group of a data set: (size, count). MIXED: 84 MiB in 69 objects, from records holding
# the body inline (4 KiB, under the 64 KiB inline threshold) to 32 MiB (six 8 MiB shards).
MIXED = ((32 * MiB, 1), (8 * MiB, 4), (MiB, 16), (256 * KiB, 16), (4 * KiB, 32))
# Mostly 32 MiB objects (8 MiB shards): copies bound by bandwidth rather than round trips.
LARGE = ((32 * MiB, 4), (256 * KiB, 8))
BG_SIZE = 256 * KiB  # the background client's objects: above the inline threshold
BG_PUT_KEYS = 16


class Bodies:
    """Deterministic bodies: key index -> a slice of one random buffer."""

    def __init__(self, largest: int) -> None:
        self._span = 64 * MiB
        self._buf = memoryview(os.urandom(self._span + largest))

    def body(self, index: int, size: int) -> memoryview:
        off = (index * 1_048_583) % self._span  # a prime stride: neighbours differ
        return self._buf[off : off + size]


def data_set(total_mib: int, group: tuple[tuple[int, int], ...] = MIXED) -> list[tuple[str, int]]:
    """(key, size) of about `total_mib` MiB of objects, `group` ((size, count), ...)
    repeated; every group holds BG_SIZE objects for the background client's GETs."""
    group_bytes = sum(size * count for size, count in group)
    groups = max(1, round(total_mib * MiB / group_bytes))
    return [(f"d/{size}/{g}-{i}", size)
            for g in range(groups) for size, count in group for i in range(count)]


async def _slices(view: memoryview) -> AsyncIterator[memoryview]:
    for off in range(0, len(view), MiB):
        yield view[off : off + MiB]


async def put(session: aiohttp.ClientSession, signer: Signer, path: str,
              body: memoryview) -> None:
    headers = signer.headers("PUT", path, {"Content-Length": str(len(body))})
    data = _slices(body) if len(body) > MiB else bytes(body)
    async with session.put(signer.endpoint + path, data=data, headers=headers) as resp:
        text = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"PUT {path}: {resp.status} {text[:200]!r}")


async def get_md5(session: aiohttp.ClientSession, signer: Signer, path: str) -> str:
    async with session.get(signer.endpoint + path,
                           headers=signer.headers("GET", path)) as resp:
        if resp.status != 200:
            raise RuntimeError(f"GET {path}: {resp.status} {(await resp.read())[:200]!r}")
        digest = hashlib.md5()
        async for chunk in resp.content.iter_chunked(MiB):
            digest.update(chunk)
        return digest.hexdigest()


async def load(session: aiohttp.ClientSession, signer: Signer, bodies: Bodies,
               objects: list[tuple[str, int]], concurrency: int = 4) -> float:
    """PUTs every object of the set into bucket `bench`; returns the seconds taken."""
    queue = list(enumerate(objects))
    start = time.perf_counter()

    async def worker() -> None:
        while queue:
            index, (key, size) = queue.pop()
            await put(session, signer, f"/bench/{key}", bodies.body(index, size))

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start


OPS = ("PUT", "GET", "healthz")  # in turn, one per tick


@dataclass
class Samples:
    lat: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPS})
    trace: list[tuple[float, str, float]] = field(default_factory=list)  # start, op, took
    errors: list[str] = field(default_factory=list)


class SteadyClient:
    """256 KiB PUTs, 256 KiB GETs (of loaded objects, checked) and GET /_kura/healthz (the
    gateway's event loop alone: no pod, no metadata) in turn, `rate` requests per second."""

    def __init__(self, session: aiohttp.ClientSession, signer: Signer, bodies: Bodies,
                 objects: list[tuple[str, int]], rate: float, max_in_flight: int = 16) -> None:
        self._session, self._signer, self._bodies = session, signer, bodies
        self._reads = [(f"/bench/{key}", hashlib.md5(bodies.body(i, size)).hexdigest())
                       for i, (key, size) in enumerate(objects) if size == BG_SIZE]
        self._first_put = len(objects)  # body indexes past the data set's
        self._period = 1.0 / rate
        self._max_in_flight = max_in_flight
        self.phase: str | None = None
        self.phases: dict[str, Samples] = {}
        self.skipped = 0

    def samples(self, phase: str) -> Samples:
        return self.phases.setdefault(phase, Samples())

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()
        tick, due = 0, loop.time()
        while not stop.is_set():
            if len(tasks) < self._max_in_flight:
                task = asyncio.create_task(self._one(tick))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            else:
                self.skipped += 1
            tick += 1
            due += self._period
            await asyncio.sleep(max(0.0, due - loop.time()))
        await asyncio.gather(*tasks)

    async def _one(self, tick: int) -> None:
        phase, op, n = self.phase, OPS[tick % len(OPS)], tick // len(OPS)
        start = time.perf_counter()
        try:
            if op == "GET":
                path, want = self._reads[n % len(self._reads)]
                got = await get_md5(self._session, self._signer, path)
                if got != want:
                    raise RuntimeError(f"GET {path}: body differs (md5 {got} != {want})")
            elif op == "PUT":
                await put(self._session, self._signer, f"/bench/bg/{n % BG_PUT_KEYS}",
                          self._bodies.body(self._first_put + tick, BG_SIZE))
            else:
                async with self._session.get(self._signer.endpoint + "/_kura/healthz") as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"healthz: {r.status}")
        except Exception as exc:
            if phase is not None:
                self.samples(phase).errors.append(f"{op}: {exc!r}"[:200])
            return
        if phase is not None:
            took = time.perf_counter() - start
            s = self.samples(phase)
            s.lat[op].append(took)
            s.trace.append((start, op, took))


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of `values`, nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]
