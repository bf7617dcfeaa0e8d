"""Appending a shard's bytes to its file with O_DIRECT, where the filesystem allows it.

A buffered write() copies every byte into the page cache and later writes it back; on
these machines that copy is the largest CPU cost of a pod (1.5 CPU-s per GiB written,
against 0.05 with O_DIRECT, measured by bench/pod.py). Shards are written once and read
rarely soon after, so keeping them in the page cache buys little. Large databases and
object stores (MinIO, Ceph's BlueStore) write this way for the same reason.

O_DIRECT needs the buffer address, the length and the file offset aligned to the device's
logical block (4096 covers the usual 512 and 4096). The appender stages bytes in a
page-aligned buffer and writes whole staged buffers directly; at the end, the whole blocks
still staged go directly too and only the last partial block is written through the page
cache, after O_DIRECT is switched off for the descriptor, so the file holds exactly the
bytes given. Which shards are written this way (64 KiB and up) is the store's choice
(_disk.DIRECT_MIN_BYTES). Filesystems that refuse O_DIRECT get plain writes throughout.

Reads follow suit (read_uncached, send_uncached): from the page cache when it holds the
range (cachestat(2) tells without reading anything in), else directly into a staging
buffer, which a send may borrow instead of a copy.

Durability is unchanged: the caller still fsyncs the file (O_DIRECT does not persist the
file's size or block map) and its directory.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import sys
import threading
from collections.abc import Callable, Sequence

__all__ = [
    "ALIGN",
    "DirectAppender",
    "Lent",
    "StagingPool",
    "is_cached",
    "open_direct",
    "open_for_append",
    "read_uncached",
    "send_uncached",
    "write_all_at",
    "write_whole_direct",
]

ALIGN = 4096
_O_DIRECT = getattr(os, "O_DIRECT", 0)


def open_for_append(
    path: os.PathLike[str] | str, flags: int, mode: int, *, direct: bool = True
) -> tuple[int, bool]:
    """Open `path` with O_DIRECT if asked and the filesystem takes it: (fd, direct)."""
    if direct and _O_DIRECT:
        try:
            return os.open(path, flags | _O_DIRECT, mode), True
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
    return os.open(path, flags, mode), False


class StagingPool:
    """Reusable page-aligned buffers, so a write does not pay fresh pages (page faults)
    for every shard. Keeps at most `keep` idle buffers."""

    def __init__(self, size: int = 2 << 20, keep: int = 16) -> None:
        if size % ALIGN:
            raise ValueError(f"staging size must be a multiple of {ALIGN}")
        self.size = size
        self._keep = keep
        self._idle: list[mmap.mmap] = []
        self._lock = threading.Lock()

    def take(self) -> mmap.mmap:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return mmap.mmap(-1, self.size)

    def give(self, buf: mmap.mmap) -> None:
        with self._lock:
            if len(self._idle) < self._keep:
                self._idle.append(buf)
                return
        buf.close()


class DirectAppender:
    """Appends to `fd` (opened by open_for_append): staged, aligned O_DIRECT writes, and a
    buffered tail at `finish`. Not thread-safe: one writer thread at a time."""

    def __init__(self, fd: int, direct: bool, pool: StagingPool) -> None:
        self._fd = fd
        self._direct = direct
        self._pool = pool
        self._stage: mmap.mmap | None = None
        self._filled = 0

    def write(self, chunks: Sequence[bytes | bytearray | memoryview]) -> int:
        """Take `chunks`; returns how many bytes reached the file (the rest is staged)."""
        if not self._direct:
            return _write_all(self._fd, [memoryview(c).cast("B") for c in chunks if len(c)])
        written = 0
        size = self._pool.size
        views = [memoryview(c).cast("B") for c in chunks if len(c)]
        while views:
            view = views.pop(0)
            if self._stage is None:
                self._stage = self._pool.take()
            take = min(len(view), size - self._filled)
            self._stage[self._filled : self._filled + take] = view[:take]
            self._filled += take
            if take < len(view):
                views.insert(0, view[take:])
            if self._filled == size:
                written += self._flush_stage()
                if not self._direct:
                    # The device refused O_DIRECT: the rest goes straight on, in order.
                    return written + _write_all(self._fd, views)
        return written

    def finish(self) -> int:
        """Write what is staged: its whole blocks directly, the last partial block through
        the page cache. Returns the bytes written."""
        written = 0
        if self._stage is not None and self._filled:
            stage = memoryview(self._stage)
            aligned = self._filled - self._filled % ALIGN if self._direct else 0
            try:
                if aligned:
                    written = self._write_direct(stage[:aligned])
                if self._direct:
                    self._buffered()
                written += _write_all(self._fd, [stage[written: self._filled]])
            finally:
                stage.release()
            self._filled = 0
        self.release()
        return written

    def release(self) -> None:
        """Give the staging buffer back (after finish, or when the write is abandoned)."""
        if self._stage is not None:
            self._pool.give(self._stage)
            self._stage, self._filled = None, 0

    def _flush_stage(self) -> int:
        assert self._stage is not None
        view = memoryview(self._stage)[: self._filled]
        try:
            written = self._write_direct(view)
        finally:
            view.release()
        self._filled = 0
        return written

    def _write_direct(self, view: memoryview) -> int:
        try:
            return _write_all(self._fd, [view])
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            # The device wants a larger alignment than ALIGN: go on through the page cache.
            self._buffered()
            return _write_all(self._fd, [view])

    def _buffered(self) -> None:
        if self._direct:  # (Linux lets F_SETFL switch O_DIRECT either way)
            flags = fcntl.fcntl(self._fd, fcntl.F_GETFL)
            fcntl.fcntl(self._fd, fcntl.F_SETFL, flags & ~_O_DIRECT)
            self._direct = False


_RWF_DSYNC = getattr(os, "RWF_DSYNC", 0)


def write_all_at(fd: int, views: list[memoryview], offset: int, *, sync: bool = False) -> int:
    """pwritev `views` at `offset` until every byte is written; returns the byte count.
    With `sync`, the bytes are durable on return (as after fdatasync): each pwritev
    carries RWF_DSYNC where the kernel has it, one system call (and one wait for the
    disk) instead of two."""
    if sync and not _RWF_DSYNC:
        total = _write_all(fd, views, offset)
        os.fdatasync(fd)
        return total
    return _write_all(fd, views, offset, _RWF_DSYNC if sync else 0)


def _write_all(fd: int, views: list[memoryview], offset: int | None = None,
               flags: int = 0) -> int:
    """writev (pwritev from `offset`, with `flags`) until every view is written; returns
    the count."""
    total = 0
    while views:
        if offset is None:
            written = os.writev(fd, views)
        else:
            written = os.pwritev(fd, views, offset + total, flags)
        total += written
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]
    return total


def write_whole_direct(fd: int, data: bytes | bytearray | memoryview, pool: StagingPool) -> None:
    """Write `data` (at most one staging buffer) at the start of the empty file `fd`, opened
    without O_DIRECT: its whole blocks directly from a staging buffer, the rest through the
    page cache. Why: on these VMs every fresh page-cache page costs the guest a host fault
    (free memory is handed back to the host), so a buffered 256 KiB write cost 1.0-1.7
    ms of CPU against 0.35 direct (8 threads, write+fsync+link+directory fsync)."""
    if len(data) < ALIGN or not _O_DIRECT:
        _write_all(fd, [memoryview(data).cast("B")])
        return
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | _O_DIRECT)
    except OSError:
        _write_all(fd, [memoryview(data).cast("B")])  # the filesystem refuses O_DIRECT
        return
    out = DirectAppender(fd, True, pool)
    try:
        out.write([data])
        out.finish()
    finally:
        out.release()


_SYS_CACHESTAT = 451  # cachestat(2), Linux 6.5+: the same number on every architecture
_PAGE = mmap.PAGESIZE


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _CacheStat(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")]


_libc = ctypes.CDLL(None, use_errno=True)
_cachestat_works = sys.platform == "linux"


def is_cached(fd: int, offset: int, length: int) -> bool | None:
    """Does the page cache hold every page of the range? None if the kernel cannot tell
    (no cachestat). Unlike a RWF_NOWAIT read, asking starts no readahead."""
    global _cachestat_works
    if not _cachestat_works:
        return None
    first = offset - offset % _PAGE
    span = offset + length - first
    stat = _CacheStat()
    if _libc.syscall(_SYS_CACHESTAT, fd, ctypes.byref(_Range(first, span)),
                     ctypes.byref(stat), 0) != 0:
        if ctypes.get_errno() in (errno.ENOSYS, errno.EPERM):
            _cachestat_works = False  # an older kernel, or a sandbox refusing it
        return None
    return stat.nr_cache * _PAGE >= span


class Lent:
    """Bytes read into a staging buffer, lent to the caller: `view` until `release()`."""

    __slots__ = ("_pool", "_stage", "_whole", "view")

    def __init__(self, pool: StagingPool, stage: mmap.mmap, whole: memoryview,
                 view: memoryview) -> None:
        self._pool, self._stage, self._whole, self.view = pool, stage, whole, view

    def release(self) -> None:
        if self._stage is not None:
            self.view.release()
            self._whole.release()
            self._pool.give(self._stage)
            self._stage = None


def read_uncached(
    fd: int, offset: int, length: int, pool: StagingPool, *, admit: bool = False,
    lend: bool = False, direct_fd: int | None = None,
) -> bytes | Lent:
    """`length` bytes of `fd` from `offset` (fewer at the end of the file): from the page
    cache when it holds them all or when `admit` (the read fills the cache); else
    directly from the disk through a reused staging buffer. Why: shards are written
    around the page cache (write_whole_direct), and a buffered read of one read once
    would fill fresh cache pages, each a host fault on these VMs (measured, 256 KiB, 4
    threads: 0.26-0.98 ms of CPU buffered against 0.17 direct). The direct read goes
    through `direct_fd` when given (an O_DIRECT fd on the same file, which a caller may
    keep open and share between threads; -1 if the filesystem refused O_DIRECT); without
    it `fd` is switched to O_DIRECT and may be left so. With `lend`, bytes read directly
    stay in the staging buffer (a Lent, no copy) until the caller has sent them."""
    first = offset - offset % ALIGN
    span = -(-(offset + length - first) // ALIGN) * ALIGN
    if (admit or not _O_DIRECT or direct_fd == -1 or span > pool.size
            or is_cached(fd, offset, length)):
        return os.pread(fd, length, offset)
    if direct_fd is None:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        try:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | _O_DIRECT)
        except OSError:
            return os.pread(fd, length, offset)
        direct_fd = fd
    stage = pool.take()
    view = memoryview(stage)
    lent = None
    try:
        try:
            got = os.preadv(direct_fd, [view[:span]], first)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            return os.pread(fd, length, offset)  # a larger alignment than ALIGN: plain
        skip = offset - first
        read = view[skip: max(skip, min(got, skip + length))]
        if not lend:
            try:
                return bytes(read)
            finally:
                read.release()
        lent = Lent(pool, stage, view, read)
        return lent
    finally:
        if lent is None:
            view.release()
            pool.give(stage)


def open_direct(path: str) -> int:
    """An O_DIRECT read-only fd on `path`, or -1 where the filesystem refuses O_DIRECT."""
    if not _O_DIRECT:
        return -1
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC | _O_DIRECT)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        return -1


def send_uncached(
    fd: int, offset: int, count: int, pool: StagingPool, send: Callable[[memoryview], None]
) -> bool:
    """Hand `count` bytes of `fd` from `offset` to `send`, read directly from the disk a
    staging buffer at a time, and return True; or return False at once, before sending
    anything, where O_DIRECT is refused (the caller then sends the file its own way).
    Raises EOFError when the file ends early (it shrank)."""
    if not _O_DIRECT:
        return False
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    try:
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | _O_DIRECT)
    except OSError:
        return False
    stage = pool.take()
    view = memoryview(stage)
    try:
        first = offset - offset % ALIGN
        skip, left, sent_any = offset - first, count, False
        while left:
            want = min(len(view), -(-(skip + left) // ALIGN) * ALIGN)  # no more than asked
            try:
                got = os.preadv(fd, [view[:want]], first)
            except OSError as exc:
                if exc.errno != errno.EINVAL or sent_any:
                    raise
                return False  # a larger alignment than ALIGN: let the caller send it
            take = min(left, got - skip)
            if take <= 0:
                raise EOFError(f"the file ended {left} bytes early")
            chunk = view[skip: skip + take]
            try:
                send(chunk)
            finally:
                chunk.release()
            sent_any = True
            left -= take
            first += got
            skip = 0
        return True
    finally:
        view.release()
        pool.give(stage)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags)
