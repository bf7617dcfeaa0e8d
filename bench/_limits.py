"""The machine's limits for the codec: raw zfec, xxhash and md5 throughput, measured here.

Benchmarks print their figures next to these, measured in the same run, so a reader can
tell a slow codec from a slow machine. Every figure is MiB/s of input bytes, the median of
`runs` runs; each run repeats its work for at least `min_time` seconds. Helpers here are
plain functions so that other benchmarks (put/get, storage) can reuse them.
"""

from __future__ import annotations

import hashlib
import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import xxhash
import zfec

MIB = 1 << 20

Work = Callable[[], object]
Clock = Callable[[], float]
Variant = tuple[Work, int, Clock]


def run_rate(
    work: Work, nbytes: int, min_time: float = 0.2, clock: Clock = time.perf_counter
) -> float:
    """MiB/s of one run: repeat `work` (handling `nbytes` each time) for >= min_time s.

    `clock` is time.thread_time for single-thread figures (CPU time of this thread: other
    processes taking the CPU do not count against us) and wall time for thread pools.
    """
    work()  # warm caches and the allocator before timing
    count, start = 0, clock()
    while True:
        work()
        count += 1
        elapsed = clock() - start
        if elapsed >= min_time:
            return count * nbytes / MIB / elapsed


def sample_rates(
    variants: dict[str, Variant], runs: int = 7, min_time: float = 0.2
) -> dict[str, list[float]]:
    """`runs` MiB/s samples of each variant (work, bytes per call, clock). Runs are
    interleaved, so drifting clocks and noisy neighbours hit every variant alike and run i
    of two variants can be compared as a pair."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(runs):
        for name, (work, nbytes, clock) in variants.items():
            samples[name].append(run_rate(work, nbytes, min_time, clock))
    return samples


def paired_ratio(ours: list[float], theirs: list[float]) -> float:
    """Median of run-by-run ratios: steadier than a ratio of medians on a busy machine."""
    return statistics.median(a / b for a, b in zip(ours, theirs, strict=True))


def in_pool(pool: ThreadPoolExecutor, tasks: list[Work]) -> Work:
    """A unit of work that runs `tasks` on `pool` and waits for all of them."""

    def work() -> None:
        for future in [pool.submit(task) for task in tasks]:
            future.result()

    return work


def zfec_stripes(k: int, m: int, stripe_size: int, count: int) -> list[list[memoryview]]:
    """`count` random stripes, each as k equal data blocks (views, as the codec slices)."""
    block = -(-stripe_size // k)
    data = memoryview(os.urandom(block * k * count))
    size = block * k
    return [
        [data[s * size + i * block : s * size + (i + 1) * block] for i in range(k)]
        for s in range(count)
    ]


def raw_zfec_encode(k: int, m: int, stripes: list[list[memoryview]]) -> list[Work]:
    """One task per stripe: zfec computing its m parity blocks, nothing else."""
    encoder, wanted = zfec.Encoder(k, k + m), tuple(range(k, k + m))
    return [lambda blocks=tuple(b): encoder.encode(blocks, wanted) for b in stripes]


def raw_zfec_decode(k: int, m: int, stripes: list[list[memoryview]]) -> list[Work]:
    """One task per stripe: zfec rebuilding data blocks 0..m-1 from the other k blocks."""
    encoder, decoder = zfec.Encoder(k, k + m), zfec.Decoder(k, k + m)
    tasks = []
    for blocks in stripes:
        parity = encoder.encode(tuple(blocks), tuple(range(k, k + m)))
        kept = list(blocks[m:]) + list(parity)
        nums = tuple(range(m, k + m))
        # Fresh tuples per call: zfec reorders its input sequence in place.
        tasks.append(lambda kept=kept, nums=nums: decoder.decode(tuple(kept), nums))
    return tasks


HASHES: dict[str, Callable[[memoryview], object]] = {
    "xxh3_64": xxhash.xxh3_64_intdigest,
    "xxh64": xxhash.xxh64_intdigest,
    "md5": lambda buf: hashlib.md5(buf).digest(),
}


def hash_rates(buf_size: int, runs: int = 5, min_time: float = 0.2) -> dict[str, float]:
    """MiB/s of each hash over one `buf_size`-byte buffer, single thread (CPU time)."""
    buf = memoryview(os.urandom(buf_size))
    variants: dict[str, Variant] = {
        name: ((lambda fn=fn: fn(buf)), buf_size, time.thread_time) for name, fn in HASHES.items()
    }
    samples = sample_rates(variants, runs, min_time)
    return {name: statistics.median(values) for name, values in samples.items()}


def parallelism(fn: Callable[[memoryview], object], buf_size: int, seconds: float = 0.5) -> float:
    """CPU seconds per wall second while two threads call fn(own buffer) in a loop.

    About 2.0 on two idle cores when fn releases the GIL, at most about 1.0 when it holds
    it (only one thread can run). Other load on the machine lowers it, never raises it.
    """
    bufs = [memoryview(os.urandom(buf_size)) for _ in range(2)]
    stop = time.perf_counter() + seconds

    def loop(buf: memoryview) -> None:
        while time.perf_counter() < stop:
            fn(buf)

    cpu, wall = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(loop, bufs))
    return (time.process_time() - cpu) / (time.perf_counter() - wall)
