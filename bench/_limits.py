"""The machine's limits for the codec: raw zfec, xxhash and md5 throughput, measured here.

Benchmarks print their figures next to these, measured in the same run, so a reader can
tell a slow codec from a slow machine. Every figure is MiB/s of input bytes, the median of
`runs` runs; each run repeats its work for at least `min_time` seconds. Helpers here are
plain functions so that other benchmarks (put/get, storage) can reuse them.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import hashlib
import itertools
import os
import resource
import statistics
import sys
import threading
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
) -> tuple[float, float]:
    """(MiB/s, page faults per MiB) of one run: repeat `work` (handling `nbytes` each
    time) for >= min_time s.

    `clock` is time.thread_time for single-thread figures (CPU time of this thread: other
    processes taking the CPU do not count against us) and wall time for thread pools.
    Page faults count the process's minor faults: fresh memory the allocator got from (or
    gave back to) the kernel, a cost that shows up as system time.
    """
    work()  # warm caches and the allocator before timing
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    count, start = 0, clock()
    while True:
        work()
        count += 1
        elapsed = clock() - start
        if elapsed >= min_time:
            mib = count * nbytes / MIB
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
            return mib / elapsed, faults / mib


def sample_rates(
    variants: dict[str, Variant], runs: int = 7, min_time: float = 0.2
) -> dict[str, list[tuple[float, float]]]:
    """`runs` (MiB/s, faults/MiB) samples of each variant (work, bytes per call, clock).
    Runs are interleaved, so drifting clocks and noisy neighbours hit every variant alike
    and run i of two variants can be compared as a pair."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(runs):
        for name, (work, nbytes, clock) in variants.items():
            samples[name].append(run_rate(work, nbytes, min_time, clock))
    return samples


def tune_malloc() -> bool:
    """Keep freed memory in the process (glibc mallopt), as a long-running server would.

    glibc hands blocks over its (adaptive) mmap threshold back to the kernel and trims the
    heap top beyond its trim threshold, so a loop allocating and freeing ~1 MiB per stripe
    can page-fault on every stripe. Returns False where mallopt is not available.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(
            libc.mallopt(m_mmap_threshold, 32 * MIB) and libc.mallopt(m_trim_threshold, 512 * MIB)
        )
    except (OSError, AttributeError):
        return False


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
    "md5": hashlib.md5,  # hashing happens in the constructor; C all the way (see gil_free_share)
}


def hash_rates(buf_size: int, runs: int = 5, min_time: float = 0.2) -> dict[str, float]:
    """MiB/s of each hash over one `buf_size`-byte buffer, single thread (CPU time)."""
    buf = memoryview(os.urandom(buf_size))
    variants: dict[str, Variant] = {
        name: ((lambda fn=fn: fn(buf)), buf_size, time.thread_time) for name, fn in HASHES.items()
    }
    samples = sample_rates(variants, runs, min_time)
    return {name: statistics.median(r for r, _ in values) for name, values in samples.items()}


def gil_free_share(
    fn: Callable[..., object], args: tuple[object, ...], seconds: float = 0.1, rounds: int = 5
) -> float:
    """How much a pure-Python thread runs while this thread is inside fn: ~1 = GIL released.

    This thread calls fn(*args) back to back from C (starmap: no bytecode in between, so
    the only chance to drop the GIL is inside fn, which must be a C function) for about
    `seconds` of CPU, while a second thread spins in Python. Result: the spinner's CPU
    time over ours (median of `rounds`); about 1 when fn releases the GIL (both threads
    run), near 0 when it holds it (the spinner waits; a short switch interval keeps the
    edges small). Unlike a throughput ratio it hardly depends on how busy the machine is,
    since both threads compete for the same cores.
    """
    count, spent = 1, 0.0
    while spent < seconds / 4:  # calibrate: how many calls make `seconds` of CPU
        count *= 2
        start = time.thread_time()
        collections.deque(itertools.starmap(fn, itertools.repeat(args, count)), maxlen=0)
        spent = time.thread_time() - start
    count = max(1, int(count * seconds / spent))
    done = threading.Event()
    spinner = threading.Thread(target=_spin, args=(done,), daemon=True)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    spinner.start()
    clock = time.pthread_getcpuclockid(spinner.ident)
    shares = []
    try:
        for _ in range(rounds):
            ours, theirs = time.thread_time(), time.clock_gettime(clock)
            collections.deque(itertools.starmap(fn, itertools.repeat(args, count)), maxlen=0)
            ours = time.thread_time() - ours
            shares.append((time.clock_gettime(clock) - theirs) / ours)
    finally:
        done.set()
        spinner.join()
        sys.setswitchinterval(interval)
    return statistics.median(shares)


def _spin(done: threading.Event) -> None:
    while not done.is_set():
        pass
