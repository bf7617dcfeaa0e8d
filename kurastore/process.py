"""Process-wide settings made once at start by the entry points."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import resource

MiB = 1 << 20
# glibc's mallopt parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Free heap memory above this is given back to the kernel (keep_heap_trimmed).
HEAP_FREE_KEPT = 64 * MiB
log = logging.getLogger(__name__)
# The same settings for child processes, through glibc's environment variables.
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 * MiB), "MALLOC_TRIM_THRESHOLD_": str(512 * MiB)}


def tune_malloc() -> bool:
    """Keep freed memory in the process instead of returning it to the kernel.

    The data path allocates and frees about a stripe (1 MiB) per block; with
    glibc's defaults each such buffer is an mmap and every stripe page-faults
    (measured: 480 faults per MiB encoded, about 40% of the encode time). With a
    32 MiB mmap threshold the buffers are reused. Memory stays bounded because
    the number of stripes in flight is. Returns False where glibc is absent."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(
            libc.mallopt(_M_MMAP_THRESHOLD, 32 * MiB) and libc.mallopt(_M_TRIM_THRESHOLD, 512 * MiB)
        )
    except (OSError, AttributeError):
        return False


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def free_heap_bytes() -> int | None:
    """Bytes malloc holds free for reuse, in every arena (glibc's mallinfo2), or None."""
    libc = _libc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _MallInfo2
    return int(libc.mallinfo2().fordblks)


def trim_heap() -> bool:
    """Give malloc's free memory back to the kernel, from the middle of the heap too
    (malloc_trim). Blocks while it walks the arenas: call it off the event loop."""
    libc = _libc()
    return bool(libc is not None and hasattr(libc, "malloc_trim") and libc.malloc_trim(0))


async def keep_heap_trimmed(kept: int = HEAP_FREE_KEPT, every_s: float = 10.0) -> None:
    """Every `every_s`, give back what malloc holds free beyond `kept`.

    Why: tune_malloc keeps freed buffers (up to 512 MiB at the top of each arena) so the
    data path reuses them without page faults, and glibc never returns free chunks from
    the middle of a heap. Measured, `kurastore server` after six rounds of 64 MiB GETs at
    2 clients: RSS 646 MiB, 239 MiB after malloc_trim; over 30 rounds it reached 1 GiB,
    enough for a memory limit to kill the gateway. Run until cancelled."""
    while True:
        await asyncio.sleep(every_s)
        free = free_heap_bytes()
        if free is None:
            return  # not glibc: nothing to do
        if free > kept:
            await asyncio.to_thread(trim_heap)
            log.debug("gave back malloc's free memory (%d MiB were free)", free // MiB)


def raise_open_files_limit(wanted: int = 65536) -> int:
    """Raise the soft limit on open files towards the hard one (at most `wanted`).

    Every client connection is a file descriptor, and so is every connection to a
    pod: with the common soft limit of 1024 a gateway serving 1,000 keep-alive
    clients runs out. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def tune_gc() -> None:
    """No full garbage collection scans what the server made at start.

    Measured in the gateway of `kurastore server` under 4 KiB requests (gc.callbacks):
    2-3 full (gen2) collections of 14-60 ms per 5,000 requests, each a stall of every
    request in flight; after gc.freeze() none over 3 ms. Freezing moves what exists
    now (modules, the app, the pools: ~50,000 objects) to a permanent generation that
    collections never scan again; garbage made later is collected as before."""
    gc.collect()
    gc.freeze()
