"""Shard files on one volume: layout, atomic durable writes, deletes, listing, usage.

Layout under the data directory:
    packs/<number>.pack                                    whole shards up to 1 MiB,
                                                           appended (_pack.py)
    shards/<partition>/<object_id>.<shard_tag>.<index>     one file per larger shard
    shards/<partition>/<object_id>/<shard_tag>.<index>     the same, as written before
                                                           (read, listed, deleted; never written)
    tmp/<...>.part                                         writes in progress (same filesystem)

Why flat: a directory per object cost every shard write a mkdir, the new directory's
own block written out by its fsync, and an fsync of the partition's directory. Measured,
256 KiB shards, 8 threads, raw write+fsync+link+directory fsync on ext4: 0.44 against
0.89 ms of CPU per shard. Older volumes keep their object directories: every read, stat,
listing and delete also looks there, a write refuses a name an old file holds, and a
delete prunes the object directory it empties.

Rules:
- Every path is built from names validated by `kurastore.storage.api`; nothing else ever
  becomes a path component, so no request can name a file outside the data directory.
- A write goes to a temporary file, is fsynced, then linked into place with `os.link`,
  which fails if the name exists (no silent overwrite, no race between two writers), and the
  directory is fsynced before the caller is told. A write that fails or is cut off is
  aborted: its temporary file is removed; `tmp/` is emptied at every start, so a crash
  leaves nothing behind either. A whole small shard (write_whole) uses an unnamed
  O_TMPFILE file in its partition's directory where the volume allows it: nothing to name
  or remove, and nothing left by a crash.
- Shard bytes go around the page cache from DIRECT_MIN_BYTES up (O_DIRECT, _direct.py):
  on these VMs a fresh page-cache page costs a host fault, which made buffered writes the
  pods' largest cost. A range of such a shard is read from the page cache when it is
  there, else directly, except the second read of a shard lately read once, which fills
  the cache: hot shards get cached, a read after a write or a scan does not evict them.
- Disk full (ENOSPC, EDQUOT) or the configured capacity becoming exceeded raises
  InsufficientStorage after the partial file is removed; reads are unaffected.
- Empty (old) object and partition directories are removed after deletes, so listing shows only
  partitions that hold shards.
- Everything here blocks: the lane calls it from its connection threads, the aiohttp app
  from its bounded I/O executor; never from the event loop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from kurastore.storage import _scrub
from kurastore.storage._direct import (
    DirectAppender,
    Lent,
    StagingPool,
    is_cached,
    open_for_append,
    read_uncached,
    send_uncached,
    write_whole_direct,
)
from kurastore.storage._pack import PACK_MAX_SHARD, PackStore, Place, StagedShard
from kurastore.storage.api import (
    PodUsage,
    ShardId,
    ShardInfo,
    VerifyResult,
    validate_object_id,
    validate_partition,
    validate_shard_tag,
)
from kurastore.storage.errors import (
    InsufficientStorage,
    ShardExists,
    ShardNotFound,
    ShardTooLarge,
)

__all__ = ["RangeRead", "ShardStore", "ShardWriter"]

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_NO_HARD_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK)
_DIR_RACE_RETRIES = 5
# Whole shards from this size up skip the page cache (write_whole_direct); smaller ones
# gain nothing: one or two pages.
DIRECT_MIN_BYTES = 64 << 10
READ_ONCE_REMEMBERED = 65536  # shards (about 8 MiB of names)
COMPACT_EVERY_S = 30.0  # how often mostly-dead packs are looked for

log = logging.getLogger("kurastore.storage")


def _fsync_dir(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


VOLUME_ID_FILE = "volume.id"


def _volume_id(root: Path) -> str:
    """The volume's random id, made (durably) the first time an empty volume is opened:
    a pod answering with a new id has lost what its old volume held."""
    path = root / VOLUME_ID_FILE
    try:
        found = path.read_text().strip()
    except FileNotFoundError:
        found = ""
    if found:
        return found
    made = uuid.uuid4().hex
    tmp = root / f"{VOLUME_ID_FILE}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o640)
    try:
        os.write(fd, made.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(root)
    return made


def _mkdir_durable(path: Path) -> None:
    """Create `path` if missing and make its entry durable in the parent."""
    try:
        os.mkdir(path, 0o750)
    except FileExistsError:
        return
    _fsync_dir(path.parent)


def _mkdir(path: str, created: list[str]) -> None:
    """Create `path` if missing; remember it, so its parent is fsynced before answering."""
    try:
        os.mkdir(path, 0o750)
    except FileExistsError:
        return
    created.append(path)


def _fsync_parents(created: Sequence[str]) -> None:
    """Make the entries of newly created directories durable (deepest first)."""
    for directory in reversed(created):
        try:
            _fsync_dir(os.path.dirname(directory))
        except FileNotFoundError:
            pass  # pruned by a concurrent delete: the link step makes and syncs it again


def _writeback_starter() -> Callable[[int, int, int], None]:
    """sync_file_range(SYNC_FILE_RANGE_WRITE) where the platform has it, else a no-op.

    Starting writeback of each batch as soon as it is written lets the disk work while the
    rest of the body arrives, so the final fsync waits for the tail only.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        fn = libc.sync_file_range
    except (OSError, AttributeError, TypeError):
        return lambda fd, offset, nbytes: None
    fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    fn.restype = ctypes.c_int
    sync_file_range_write = 2

    def start(fd: int, offset: int, nbytes: int) -> None:
        fn(fd, offset, nbytes, sync_file_range_write)  # advisory: errors change nothing

    return start


_start_writeback = _writeback_starter()


@dataclass(frozen=True)
class RangeRead:
    """What `ShardStore.read_range` found: the shard's size, the byte range [start, stop)
    it resolved to (empty if unsatisfiable) and the bytes when they were small enough."""

    size: int
    start: int
    stop: int
    data: bytes | memoryview | None
    path: str = ""  # the file it read, for a sendfile of a larger range
    lent: Lent | None = None  # holds `data` when lent from a staging buffer: release it

    def release(self) -> None:
        """Give back the staging buffer `data` was lent from (once it is sent)."""
        if self.lent is not None:
            self.lent.release()


class ShardStore:
    """The shard files of one pod. Thread-safe; every method may block on the disk."""

    def __init__(
        self,
        data_dir: Path,
        *,
        capacity_bytes: int | None = None,
        max_shard_bytes: int = 16 << 30,
        pack_max_shard: int = PACK_MAX_SHARD,
    ) -> None:
        self.root = Path(data_dir).absolute()
        self.shards_dir = self.root / "shards"
        self.tmp_dir = self.root / "tmp"
        self._shards_path, self._tmp_path = str(self.shards_dir), str(self.tmp_dir)
        self.volume_id = ""  # set by open()
        self.capacity_bytes = capacity_bytes
        self.max_shard_bytes = max_shard_bytes
        self._lock = threading.Lock()
        # Fsyncs of new directories' parents, run beside the data fsync (see commit()).
        self._dir_syncer = ThreadPoolExecutor(4, thread_name_prefix="pod-dirsync")
        # Page-aligned buffers for O_DIRECT shard writes (_direct.py), reused across shards.
        self.staging = StagingPool()
        # Whole shards up to pack_max_shard bytes are appended to packs (0: never).
        self.pack_max_shard = min(pack_max_shard, PACK_MAX_SHARD)
        self.packs = PackStore(self.root, self.staging)
        self._stopping = threading.Event()
        self._compactor: threading.Thread | None = None
        self._used_bytes = 0
        self._reserved_bytes = 0
        self._shards = 0
        self._unnamed_files = False  # O_TMPFILE + link through /proc works here (open())
        # Partitions found holding old-layout object directories at open(): a write there
        # checks the old name too. Nothing makes new ones, so the set never grows.
        self._legacy: set[int] = set()
        # Partitions whose directory entry in shards/ is known durable: those found at
        # open() (shards/ fsynced then) and those whose maker fsynced shards/ since. A
        # write that found its partition's directory made by another writer, not yet
        # synced, syncs shards/ itself before answering (_entry_durable).
        self._durable_entries: set[int] = set()
        # Shards lately read once around the page cache, oldest first (_read_before).
        self._read_once: dict[str, None] = {}

    # -- lifecycle -------------------------------------------------------------------------

    def open(self) -> None:
        """Create the layout, drop leftovers of interrupted writes, count what is stored."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.volume_id = _volume_id(self.root)
        _mkdir_durable(self.shards_dir)
        _mkdir_durable(self.tmp_dir)
        for entry in os.scandir(self.tmp_dir):
            # Anything here is an unacknowledged write: it was never visible, so drop it.
            if entry.is_dir(follow_symlinks=False):
                continue
            os.unlink(entry.path)
        self._unnamed_files = _unnamed_files_work(self.tmp_dir)
        used = shards = 0
        legacy: set[int] = set()
        for info in self._walk(self._file_partitions(), legacy):
            used += info.size
            shards += 1
        partitions = set(self._file_partitions())
        _fsync_dir(self.shards_dir)  # entries a crashed run made stay made from here on
        self.packs.open()
        self._compactor = threading.Thread(target=self._compact_loop, name="pod-compactor",
                                           daemon=True)
        self._compactor.start()
        used += self.packs.live_bytes
        shards += self.packs.live_shards
        with self._lock:
            self._used_bytes, self._shards, self._reserved_bytes = used, shards, 0
            self._legacy = legacy
            self._durable_entries = partitions

    def close(self) -> None:
        """Stop the helper threads (after the last write has finished)."""
        self._stopping.set()
        if self._compactor is not None:
            self._compactor.join()
        self._dir_syncer.shutdown(wait=True)
        self.packs.close()

    def compact_packs(self) -> int:
        """Compact every sealed pack that is mostly dead (_pack.py); bytes reclaimed."""
        return sum(self.packs.compact(number) for number in self.packs.compactable())

    def _compact_loop(self) -> None:
        while not self._stopping.wait(COMPACT_EVERY_S):
            try:
                self.compact_packs()
            except Exception:  # a disk error: logged, tried again next time
                log.exception("compacting packs failed")

    def is_ready(self) -> bool:
        """True if the volume is there and writable."""
        return os.access(self.shards_dir, os.W_OK | os.X_OK) and os.access(
            self.tmp_dir, os.W_OK | os.X_OK
        )

    # -- paths -----------------------------------------------------------------------------

    def partition_dir(self, partition: int) -> Path:
        return self.shards_dir / str(validate_partition(partition))

    def object_dir(self, partition: int, object_id: str) -> Path:
        """The old layout's directory of one object (see the module's docstring)."""
        return self.partition_dir(partition) / validate_object_id(object_id)

    def shard_path(self, partition: int, shard: ShardId) -> str:
        """Where a shard is written: `shards/<partition>/<shard name>`."""
        return f"{self._shards_path}/{validate_partition(partition)}/{shard.name}"

    def legacy_shard_path(self, partition: int, shard: ShardId) -> str:
        """Where the old layout kept a shard: `shards/<partition>/<object_id>/<tag>.<i>`."""
        return f"{self._shards_path}/{validate_partition(partition)}/{shard.object_id}/" \
               f"{shard.file_name}"

    def shard_file(self, partition: int, shard: ShardId) -> Path:
        """The shard's file: where it is written, or its old-layout file if only that one
        exists."""
        path = self.shard_path(partition, shard)
        if not os.path.lexists(path):
            legacy = self.legacy_shard_path(partition, shard)
            if os.path.lexists(legacy):
                return Path(legacy)
        return Path(path)

    def _legacy_exists(self, partition: int, shard: ShardId) -> bool:
        return partition in self._legacy and os.path.lexists(
            self.legacy_shard_path(partition, shard))

    # -- reads -----------------------------------------------------------------------------

    def stat(self, partition: int, shard: ShardId) -> ShardInfo:
        """Size and mtime of one shard; ShardNotFound if absent."""
        place = self.packs.place(partition, shard.name)
        if place is not None:
            return ShardInfo(partition, shard, place.size, place.mtime)
        try:
            st = os.stat(self.shard_path(partition, shard))
        except FileNotFoundError:
            try:
                st = os.stat(self.legacy_shard_path(partition, shard))
            except FileNotFoundError:
                raise ShardNotFound(
                    f"shard {shard.name} not in partition {partition}") from None
        return ShardInfo(partition, shard, st.st_size, st.st_mtime)

    def read(self, partition: int, shard: ShardId, offset: int = 0, length: int = -1) -> bytes:
        """Read up to `length` bytes (all when -1) from `offset`; ShardNotFound if absent."""
        place = self.packs.place(partition, shard.name)
        if place is not None:
            first = min(offset, place.size)
            count = place.size - first if length < 0 else min(length, place.size - first)
            got = self._packed_bytes(partition, shard, first, count, admit=True)
            if got is not None:
                return got
        try:
            with open(self.shard_file(partition, shard), "rb", buffering=0) as f:
                f.seek(offset)
                return f.read() if length < 0 else f.read(length)
        except FileNotFoundError:
            raise ShardNotFound(f"shard {shard.name} not in partition {partition}") from None

    def read_range(
        self, partition: int, shard: ShardId, start: int | None, stop: int | None, limit: int,
        *, lend: bool = False,
    ) -> RangeRead:
        """Resolve an HTTP byte range (`Request.http_range` form: stop exclusive, negative
        start = suffix) against the shard and, if it spans at most `limit` bytes, read it.

        `data` is None when the range is larger (serve it with sendfile instead) or not
        satisfiable (`start >= stop`). ShardNotFound if absent. With `lend`, `data` may be
        a view of a staging buffer: call `release()` on the answer once it is sent.
        Packed shards (at most 1 MiB) are always read, whatever `limit`.
        """
        place = self.packs.place(partition, shard.name)
        if place is not None:
            packed = self._read_packed(partition, shard, place, start, stop, lend)
            if packed is not None:
                return packed
        path = self.shard_path(partition, shard)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            path = self.legacy_shard_path(partition, shard)
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise ShardNotFound(
                    f"shard {shard.name} not in partition {partition}") from None
        try:
            size = os.fstat(fd).st_size
            first, end = _resolve(size, start, stop)
            if first >= end and not (start is None and size == 0):
                return RangeRead(size, first, first, None, path)
            if end - first > limit:
                return RangeRead(size, first, end, None, path)
            if end - first < DIRECT_MIN_BYTES:
                return RangeRead(size, first, end, os.pread(fd, end - first, first), path)
            got = read_uncached(fd, first, end - first, self.staging,
                                admit=self._read_before(path), lend=lend)
            if isinstance(got, Lent):
                return RangeRead(size, first, end, got.view, path, got)
            return RangeRead(size, first, end, got, path)
        finally:
            os.close(fd)

    def _read_packed(self, partition: int, shard: ShardId, place: Place, start: int | None,
                     stop: int | None, lend: bool) -> RangeRead | None:
        """read_range of a packed shard; None if its pack file is gone (the caller then
        looks for a file of that name, finds none, and answers ShardNotFound)."""
        first, end = _resolve(place.size, start, stop)
        key = f"pack:{partition}/{shard.name}"
        if first >= end:
            return RangeRead(place.size, first, first, None if start is not None or
                             place.size else b"", key)
        data = self.packs.read(partition, shard, first, end - first,
                               admit=self._read_before(key) if end - first >= DIRECT_MIN_BYTES
                               else True, lend=lend)
        if data is None:
            return None
        if isinstance(data, Lent):
            return RangeRead(place.size, first, end, data.view, key, data)
        return RangeRead(place.size, first, end, data, key)

    def _packed_bytes(self, partition: int, shard: ShardId, first: int, count: int, *,
                      admit: bool) -> bytes | None:
        """`count` bytes of a packed shard from `first`, copied; None if it went away."""
        got = self.packs.read(partition, shard, first, count, admit=admit, lend=False)
        assert got is None or isinstance(got, bytes)
        return got

    def send_range(
        self, file: BinaryIO, path: str, start: int, count: int,
        send: Callable[[memoryview], None],
    ) -> bool:
        """Send `count` bytes of the open shard `file` (at `path`) from `start` through
        `send`, read directly from the disk, and return True; False (nothing sent) when
        the page cache should serve them instead (sendfile): the range is cached, the
        shard was read lately, or the volume refuses O_DIRECT. ShardNotFound if the file
        shrank meanwhile. Why: like read_range's, a large read of a shard read once
        should not fill the page cache (fresh pages are host faults on these VMs)."""
        fd = file.fileno()
        if self._read_before(path) or is_cached(fd, start, count) is not False:
            return False
        try:
            return send_uncached(fd, start, count, self.staging, send)
        except EOFError as exc:
            raise ShardNotFound(f"shard at {path} shrank while it was sent: {exc}") from None

    def _read_before(self, path: str) -> bool:
        """Was this shard read (around the page cache) lately? A shard read a second time
        is read into the page cache, so hot shards stay there while shards read once (a
        scan, a heal, the read after a write) do not push them out."""
        with self._lock:
            if path in self._read_once:
                del self._read_once[path]
                return True
            self._read_once[path] = None
            if len(self._read_once) > READ_ONCE_REMEMBERED:
                del self._read_once[next(iter(self._read_once))]
            return False

    def list_partitions(self) -> list[int]:
        """Partitions that hold at least one shard, ascending."""
        return sorted(set(self._file_partitions()) | self.packs.partitions())

    def _file_partitions(self) -> list[int]:
        """Partitions that have a directory of shard files."""
        found = []
        for entry in os.scandir(self.shards_dir):
            try:
                partition = validate_partition(entry.name)
            except ValueError:
                continue  # not ours: never listed, never touched
            if entry.is_dir(follow_symlinks=False):
                found.append(partition)
        return found

    def list_partition(self, partition: int) -> list[ShardInfo]:
        """Every shard of one partition, ordered by shard name."""
        return sorted([*self._walk([partition]), *self.packs.list(partition)],
                      key=lambda info: info.shard.name)

    def verify(self, partition: int, shard: ShardId, owner: bytes | None) -> VerifyResult:
        """Check every frame of one shard (the scrubber's question); ShardNotFound."""
        place = self.packs.place(partition, shard.name)
        if place is not None:
            got = self._packed_bytes(partition, shard, 0, place.size, admit=False)
            if got is not None:
                return _scrub.verify_bytes(got, shard.index, owner)
        try:
            return _scrub.verify_file(self.shard_file(partition, shard), shard.index, owner)
        except FileNotFoundError:
            raise ShardNotFound(f"shard {shard.name} not in partition {partition}") from None

    def _walk(self, partitions: Sequence[int], legacy: set[int] | None = None
              ) -> Iterator[ShardInfo]:
        """Every shard of `partitions`, in both layouts; the partitions holding old-layout
        object directories are added to `legacy` when given."""
        for partition in partitions:
            try:
                objects = list(os.scandir(self.partition_dir(partition)))
            except FileNotFoundError:
                continue
            for obj in objects:
                if not obj.is_dir(follow_symlinks=False):
                    info = self._info_of(partition, None, obj)
                    if info is not None:
                        yield info
                    continue
                if legacy is not None:
                    legacy.add(partition)
                try:
                    files = list(os.scandir(obj.path))
                except FileNotFoundError:
                    continue  # deleted while we walked
                for f in files:
                    info = self._info_of(partition, obj.name, f)
                    if info is not None:
                        yield info

    @staticmethod
    def _info_of(
        partition: int, object_id: str | None, entry: os.DirEntry[str]
    ) -> ShardInfo | None:
        """The shard a file is (`object_id`: of its old-layout directory), or None."""
        try:
            name = entry.name if object_id is None else f"{object_id}.{entry.name}"
            shard = ShardId.parse(name)
            if not entry.is_file(follow_symlinks=False):
                return None
            st = entry.stat(follow_symlinks=False)
        except (ValueError, FileNotFoundError):
            return None
        return ShardInfo(partition, shard, st.st_size, st.st_mtime)

    def usage(self) -> PodUsage:
        """Capacity (quota or volume size), bytes in shards, bytes still writable, count."""
        st = os.statvfs(self.root)
        disk_total = st.f_blocks * st.f_frsize
        disk_free = st.f_bavail * st.f_frsize
        with self._lock:
            used, reserved, shards = self._used_bytes, self._reserved_bytes, self._shards
        if self.capacity_bytes is None:
            return PodUsage(disk_total, used, disk_free, shards, self.volume_id)
        free = max(0, min(disk_free, self.capacity_bytes - used - reserved))
        return PodUsage(self.capacity_bytes, used, free, shards, self.volume_id)

    # -- writes ----------------------------------------------------------------------------

    def begin_write(
        self, partition: int, shard: ShardId, expected_size: int | None = None
    ) -> ShardWriter:
        """Start writing a new shard; ShardExists at once if it is already stored.
        `expected_size`, when known, lets a small shard skip O_DIRECT staging."""
        if os.path.lexists(self.shard_path(partition, shard)) or self._legacy_exists(
            partition, shard
        ) or self.packs.holds(partition, shard.name):
            raise ShardExists(f"shard {shard.name} already in partition {partition}")
        return ShardWriter(self, partition, shard, expected_size)

    def write_whole(
        self, partition: int, shard: ShardId, data: bytes | bytearray | memoryview
    ) -> ShardInfo:
        """Write a shard already in memory in one call (the small-shard path).

        The same guarantees as begin_write + commit, in fewer system calls: no existence
        check first (the link refuses an existing name), no writeback hint, no staging,
        the size and mtime known without a stat, and plain string paths. From
        DIRECT_MIN_BYTES up, written directly from a staging buffer.
        """
        nbytes = len(data)
        if nbytes <= self.pack_max_shard:
            return self._write_packed(partition, shard, data)
        if nbytes >= self.staging.size:
            writer = self.begin_write(partition, shard, nbytes)  # large: O_DIRECT staging
            try:
                writer.write([data])
                return writer.commit()
            except BaseException:
                writer.abort()
                raise
        if nbytes > self.max_shard_bytes:
            raise ShardTooLarge(f"shard larger than {self.max_shard_bytes} bytes")
        obj_dir = f"{self._shards_path}/{validate_partition(partition)}"  # holds the file
        dest = f"{obj_dir}/{shard.name}"
        if self._legacy_exists(partition, shard):
            raise ShardExists(f"shard {shard.name} already in partition {partition}")
        self._reserve(nbytes)
        stored, created = 0, []  # created: the directories this write made
        try:
            write = self._write_unnamed if self._unnamed_files else self._write_named
            stored, mtime = write(obj_dir, dest, shard, partition, data, created)
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                raise InsufficientStorage("disk full") from exc
            raise
        finally:
            self._settle(nbytes, stored)
            if not stored and created:
                self._prune_partition(partition)
        return ShardInfo(partition, shard, stored, mtime)

    def _write_packed(
        self, partition: int, shard: ShardId, data: bytes | bytearray | memoryview
    ) -> ShardInfo:
        """write_whole into the current pack (_pack.py): durable when it returns."""
        self._reserve(len(data))
        try:
            place = self.packs.put(partition, shard, data, time.time(),
                                   exists=self._file_named(partition, shard))
        except BaseException:
            self._settle(len(data), 0)
            raise
        return self._count_packed(partition, shard, len(data), place)

    def stage_packed(self, shard: ShardId, length: int) -> StagedShard | None:
        """A buffer to receive a shard of `length` bytes (at most pack_max_shard) into, for
        write_packed_async; None where it cannot be had (receive it anywhere then)."""
        return self.packs.stage(shard.name, length)

    def write_packed_async(
        self, partition: int, shard: ShardId,
        data: bytes | bytearray | memoryview | StagedShard,
        then: Callable[[ShardInfo | None, BaseException | None], None],
    ) -> None:
        """write_whole of a shard of at most pack_max_shard bytes, queued: `then` gets its
        ShardInfo (or the error) once durable, from the thread that wrote the batch, which
        is the caller's at its next `commit_packed()` unless another thread led first.
        ShardExists and InsufficientStorage are raised here, before anything is queued.
        A StagedShard (stage_packed) is this call's to release from then on."""
        nbytes = len(data)
        try:
            self._reserve(nbytes)
        except BaseException:
            if isinstance(data, StagedShard):
                data.release()
            raise

        def settled(place: Place | None, error: BaseException | None) -> None:
            if place is None:
                self._settle(nbytes, 0)
                then(None, error)
            else:
                then(self._count_packed(partition, shard, nbytes, place), None)

        try:
            self.packs.put_async(partition, shard, data, time.time(),
                                 exists=self._file_named(partition, shard), then=settled)
        except BaseException:
            self._settle(nbytes, 0)
            raise

    def commit_packed(self) -> None:
        """Write the queued write_packed_async shards (one batch, one durable write) on this
        thread, and call their `then`s here; see PackStore.lead_queued."""
        self.packs.lead_queued()

    def _file_named(self, partition: int, shard: ShardId) -> Callable[[], bool]:
        """The check a packed write makes under the pack's lock: is there a shard file of
        that name (either layout)?"""
        path = self.shard_path(partition, shard)
        return lambda: os.path.lexists(path) or self._legacy_exists(partition, shard)

    def _count_packed(self, partition: int, shard: ShardId, reserved: int,
                      place: Place) -> ShardInfo:
        with self._lock:  # counted even when empty
            self._reserved_bytes -= reserved
            self._used_bytes += place.size
            self._shards += 1
        return ShardInfo(partition, shard, place.size, place.mtime)

    def _write_unnamed(
        self, obj_dir: str, dest: str, shard: ShardId, partition: int,
        data: bytes | bytearray | memoryview, created: list[str],
    ) -> tuple[int, float]:
        """write_whole through an unnamed file (O_TMPFILE) made in the partition's
        directory and linked at `dest` once durable: no name to create and unlink in tmp/ (measured,
        8 writers: 0.50 against 0.57 ms of CPU per 256 KiB shard), and a crash leaves
        nothing behind. The directory is opened once and serves the unnamed file, the link
        and the last fsync: four system calls fewer than by path, each one a GIL round
        trip among the lane's threads. Returns the size and mtime."""
        dir_fd, fd = self._open_unnamed(obj_dir, created)
        try:
            linked_here = True
            try:
                self._write_data(fd, data)
                os.fsync(fd)
                mtime = time.time()
                _fsync_parents(created)
                try:
                    os.link(_fd_path(fd), shard.name, dst_dir_fd=dir_fd)
                except FileExistsError:
                    raise ShardExists(
                        f"shard {shard.name} already in partition {partition}"
                    ) from None
                except FileNotFoundError:
                    # A delete pruned the directory while the file was written (it looked
                    # empty): place it by path, which makes the directories again.
                    linked_here = False
                    _fsync_parents(self._link_new(_fd_path(fd), obj_dir, dest, shard,
                                                  partition, link=_link_open_file))
            finally:
                os.close(fd)
            if linked_here:
                os.fsync(dir_fd)
            else:
                _fsync_dir(obj_dir)
        finally:
            os.close(dir_fd)
        self._entry_durable(partition, made_here=bool(created) and linked_here)
        return len(data), mtime

    def _write_data(self, fd: int, data: bytes | bytearray | memoryview) -> None:
        """The bytes of a whole shard into the new file `fd`: directly from a staging
        buffer from DIRECT_MIN_BYTES up (see _direct.write_whole_direct)."""
        if len(data) >= DIRECT_MIN_BYTES:
            write_whole_direct(fd, data, self.staging)
        else:
            _write_all(fd, data)

    def _open_unnamed(self, obj_dir: str, created: list[str]) -> tuple[int, int]:
        """An fd of the directory `obj_dir` (the partition's; made first if missing, noted
        in `created`) and an unnamed file opened in it."""
        for attempt in range(_DIR_RACE_RETRIES):
            if attempt:  # the partition's directory usually exists: made only if missing
                _make_dirs(obj_dir, created)
            try:
                dir_fd = os.open(obj_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    fd = os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o640,
                                 dir_fd=dir_fd)
                except BaseException:
                    os.close(dir_fd)
                    raise
                return dir_fd, fd
            except OSError as exc:
                # A delete pruned the (empty) directory, or is removing it (EPERM from
                # ext4 for a directory being removed): make it again.
                if exc.errno not in (errno.ENOENT, errno.EPERM) or (
                    attempt == _DIR_RACE_RETRIES - 1
                ):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _write_named(
        self, obj_dir: str, dest: str, shard: ShardId, partition: int,
        data: bytes | bytearray | memoryview, created: list[str],
    ) -> tuple[int, float]:
        """write_whole through a named temporary file in tmp/ (no O_TMPFILE here)."""
        tmp = f"{self._tmp_path}/{partition}.{shard.name}.{uuid.uuid4().hex}.part"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
            try:
                self._write_data(fd, data)
                _make_dirs(obj_dir, created)
                os.fsync(fd)
                st = os.fstat(fd)
            finally:
                os.close(fd)
            _fsync_parents(created)
            _fsync_parents(self._link_new(tmp, obj_dir, dest, shard, partition))
            _fsync_dir(obj_dir)
            self._entry_durable(partition, made_here=bool(created))
        finally:
            _unlink_quietly(tmp)
        return st.st_size, st.st_mtime

    def _link_new(
        self, tmp: str, obj_dir: str, dest: str, shard: ShardId, partition: int,
        link: Callable[[str, str], None] = os.link,
    ) -> list[str]:
        """Link the written file `tmp` at `dest`; ShardExists if the name is taken. Return
        the directories whose entries still need an fsync (the ones made here, or the whole
        path after racing a delete, since another writer may have re-made a directory and
        not synced it yet)."""
        created: list[str] = []
        raced = False
        for _ in range(_DIR_RACE_RETRIES):
            try:
                _make_dirs(obj_dir, created)
                try:
                    link(tmp, dest)
                except OSError as exc:
                    if exc.errno not in _NO_HARD_LINKS:
                        raise
                    self._rename_no_replace(tmp, dest)
                return [os.path.dirname(obj_dir), obj_dir] if raced else created
            except FileExistsError:
                raise ShardExists(f"shard {shard.name} already in partition {partition}") from None
            except FileNotFoundError:
                raced = True  # a delete pruned the (empty) directory meanwhile: make it again
            except OSError as exc:
                if exc.errno in _DISK_FULL:
                    raise InsufficientStorage("disk full") from exc
                raise
        raise OSError(errno.EAGAIN, f"could not place {dest}: directories keep disappearing")

    def _rename_no_replace(self, tmp: str, dest: str) -> None:
        # Filesystems without hard links: check and rename under the store's lock, which
        # every writer of this process takes, so two writers cannot both win.
        with self._lock:
            if os.path.exists(dest):
                raise FileExistsError(errno.EEXIST, "exists", dest)
            os.rename(tmp, dest)

    def _reserve(self, nbytes: int) -> None:
        with self._lock:
            if (
                self.capacity_bytes is not None
                and self._used_bytes + self._reserved_bytes + nbytes > self.capacity_bytes
            ):
                raise InsufficientStorage("pod capacity reached")
            self._reserved_bytes += nbytes

    def _settle(self, reserved: int, stored: int) -> None:
        with self._lock:
            self._reserved_bytes -= reserved
            if stored:
                self._used_bytes += stored
                self._shards += 1

    # -- deletes ---------------------------------------------------------------------------

    def delete(self, partition: int, shard: ShardId) -> bool:
        """Remove one shard (in any layout); False if it was not there."""
        size = self.packs.delete(partition, shard.name)
        if size is not None:
            self._forget(size, 1)
            return True
        for path, prune in ((self.shard_path(partition, shard), self._prune_partition),
                            (self.legacy_shard_path(partition, shard), None)):
            try:
                size = os.stat(path).st_size
                os.unlink(path)
            except FileNotFoundError:
                continue
            self._forget(size, 1)
            if prune is None:
                self._prune(partition, shard.object_id)
            else:
                prune(partition)
            return True
        return False

    def delete_object(self, partition: int, object_id: str, shard_tag: str | None = None) -> int:
        """Remove every shard of `object_id` (only those of `shard_tag` if given); count them."""
        obj_dir = self.object_dir(partition, object_id)
        tag = None if shard_tag is None else validate_shard_tag(shard_tag)
        flat = f"{object_id}." if tag is None else f"{object_id}.{tag}."
        packed = 0
        for name in self.packs.names_with_prefix(partition, flat):
            size = self.packs.delete(partition, name)
            if size is not None:
                self._forget(size, 1)
                packed += 1
        count = self._unlink_listed(
            self.partition_dir(partition),  # this layout: the object's files among the partition's
            lambda entry: entry.name.startswith(flat)
            and self._info_of(partition, None, entry) is not None,
        )
        if count:
            self._prune_partition(partition)
        old_count = self._unlink_listed(
            obj_dir,  # the old layout's directory of the object
            lambda entry: self._info_of(partition, object_id, entry) is not None
            and (tag is None or entry.name.startswith(tag + ".")),
        )
        if old_count:
            self._prune(partition, object_id)
        return packed + count + old_count

    def _unlink_listed(self, directory: str | Path,
                       wanted: Callable[[os.DirEntry[str]], bool]) -> int:
        """Remove the files of `directory` that `wanted` picks; how many went."""
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return 0
        count = size = 0
        for entry in entries:
            if wanted(entry):
                removed = _unlink_entry(entry)
                if removed is not None:
                    count += 1
                    size += removed
        if count:
            self._forget(size, count)
        return count

    def _forget(self, size: int, count: int) -> None:
        with self._lock:
            self._used_bytes -= size
            self._shards -= count

    def _entry_durable(self, partition: int, made_here: bool) -> None:
        """Before a write answers: its partition's directory entry is on disk. Made here,
        the write fsynced shards/ already; found, it was either known durable or made by
        a writer still on its way to that fsync (then done here, once)."""
        if partition in self._durable_entries:
            return
        if not made_here:
            _fsync_dir(self.shards_dir)
        self._durable_entries.add(partition)

    def _prune_partition(self, partition: int) -> None:
        """Fsync the partition's directory, or drop it when empty and fsync its parent."""
        part_dir = self.partition_dir(partition)
        durable = part_dir
        self._durable_entries.discard(partition)  # before the rmdir: a re-made one is new
        try:
            os.rmdir(part_dir)
            durable = part_dir.parent
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                raise
        try:
            _fsync_dir(durable)
        except FileNotFoundError:
            pass  # removed by a concurrent delete, which made it durable itself

    def _prune(self, partition: int, object_id: str) -> None:
        """Old layout: fsync the object's directory, then drop it and its partition when
        empty."""
        obj_dir = self.object_dir(partition, object_id)
        durable_parent = obj_dir
        self._durable_entries.discard(partition)  # as in _prune_partition
        for directory in (obj_dir, obj_dir.parent):
            try:
                os.rmdir(directory)
            except OSError as exc:
                if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                    raise
                break
            durable_parent = directory.parent
        try:
            _fsync_dir(durable_parent)
        except FileNotFoundError:
            pass  # removed by a concurrent delete, which made it durable itself


class ShardWriter:
    """One shard being written: `write` batches, then `commit` or `abort` (idempotent)."""

    def __init__(
        self, store: ShardStore, partition: int, shard: ShardId, expected_size: int | None = None
    ) -> None:
        self.store = store
        self.partition = partition
        self.shard = shard
        self.size = 0
        self._reserved = 0
        self.tmp_path = store.tmp_dir / f"{partition}.{shard.name}.{uuid.uuid4().hex}.part"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        # A small shard gains nothing from O_DIRECT (DIRECT_MIN_BYTES): open it plainly
        # and skip the staging copy.
        small = expected_size is not None and expected_size < DIRECT_MIN_BYTES
        fd, direct = open_for_append(self.tmp_path, flags, 0o640, direct=not small)
        self._fd: int | None = fd
        self._out = DirectAppender(fd, direct, store.staging)
        self._on_disk = 0  # bytes in the file; the rest of `size` is staged in `_out`
        self._done = False
        self._made_dirs = False

    def write(self, chunks: Sequence[bytes | bytearray | memoryview]) -> None:
        """Append `chunks` to the temporary file (one writev, looping on short writes)."""
        nbytes = sum(len(c) for c in chunks)
        if self.size + nbytes > self.store.max_shard_bytes:
            raise ShardTooLarge(f"shard larger than {self.store.max_shard_bytes} bytes")
        self.store._reserve(nbytes)
        self._reserved += nbytes
        assert self._fd is not None, "write after commit or abort"
        try:
            written = self._out.write(chunks)
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                raise InsufficientStorage("disk full") from exc
            raise
        self.size += nbytes
        if written:
            _start_writeback(self._fd, self._on_disk, written)  # no-op for O_DIRECT writes
            self._on_disk += written

    def commit(self) -> ShardInfo:
        """Make the shard durable and visible; ShardExists if another writer won the name.

        Order: the directories are made first, so the data fsync and the fsync of their
        parents run at the same time (one journal commit instead of two); only then is the
        name linked and its directory fsynced. Every fsync happens before the caller hears.
        """
        assert self._fd is not None and not self._done, "commit after commit or abort"
        dest = self.store.shard_path(self.partition, self.shard)
        part_dir = os.path.dirname(dest)
        created: list[str] = []
        _make_dirs(part_dir, created)
        self._made_dirs = bool(created)
        parents = self.store._dir_syncer.submit(_fsync_parents, created) if created else None
        try:
            self._on_disk += self._out.finish()
            os.fsync(self._fd)
            st = os.fstat(self._fd)
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                raise InsufficientStorage("disk full") from exc
            raise
        finally:
            if parents is not None:
                parents.result()
        os.close(self._fd)
        self._fd = None
        # Made again only if a delete raced us.
        if self.store._legacy_exists(self.partition, self.shard):
            raise ShardExists(f"shard {self.shard.name} already in partition {self.partition}")
        _fsync_parents(self.store._link_new(
            str(self.tmp_path), part_dir, dest, self.shard, self.partition))
        _fsync_dir(part_dir)
        self.store._entry_durable(self.partition, made_here=self._made_dirs)
        self._done = True
        self.store._settle(self._reserved, st.st_size)
        self._reserved = 0
        # The name in tmp/ is not needed any more; if we crash before this, open() drops it.
        self._unlink_tmp()
        return ShardInfo(self.partition, self.shard, st.st_size, st.st_mtime)

    def abort(self) -> None:
        """Drop the partial shard: close and remove the temporary file, release the quota."""
        if self._done:
            return
        self._done = True
        self._out.release()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self._unlink_tmp()
        self.store._settle(self._reserved, 0)
        self._reserved = 0
        if self._made_dirs:
            # commit() made the partition's directory, then failed: drop it if empty.
            self.store._prune_partition(self.partition)

    def _unlink_tmp(self) -> None:
        _unlink_quietly(self.tmp_path)


def _resolve(size: int, start: int | None, stop: int | None) -> tuple[int, int]:
    """An HTTP byte range (stop exclusive, negative start = suffix) against `size` bytes."""
    if start is None:
        return 0, size
    if start < 0:
        return max(0, size + start), size
    return start, size if stop is None else min(stop, size)


def _make_dirs(obj_dir: str, created: list[str]) -> None:
    """Make the partition and object directories if missing, noting those made."""
    try:
        try:
            _mkdir(obj_dir, created)  # the partition's directory usually exists already
        except FileNotFoundError:
            _mkdir(os.path.dirname(obj_dir), created)
            _mkdir(obj_dir, created)
    except FileNotFoundError:
        pass  # the partition was pruned between the two: _link_new makes it again
    except OSError as exc:
        if exc.errno in _DISK_FULL:
            raise InsufficientStorage("disk full") from exc
        raise


def _fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def _link_open_file(fd_path: str, dest: str) -> None:
    """Give the open file behind /proc/self/fd/N the name `dest` (FileExistsError if
    taken). os.link calls link(2), which would link the /proc symlink itself; with a dir
    fd it calls linkat(2) with AT_SYMLINK_FOLLOW, which links the file it points to (and
    needs no privilege, unlike AT_EMPTY_PATH). The dir fd is unused: both paths are
    absolute."""
    root = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.link(fd_path, dest, src_dir_fd=root, follow_symlinks=True)
    finally:
        os.close(root)


def _unnamed_files_work(directory: Path) -> bool:
    """Can this volume make an O_TMPFILE file and link it by its /proc/self/fd name?
    (Not on every filesystem, kernel or sandbox: then writes go through named files.)"""
    if not hasattr(os, "O_TMPFILE"):
        return False
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY | os.O_CLOEXEC, 0o640)
    except OSError:
        return False
    probe = directory / f"probe.{uuid.uuid4().hex}"
    try:
        _link_open_file(_fd_path(fd), str(probe))
    except OSError:
        return False
    finally:
        os.close(fd)
    probe.unlink()
    return True


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    done = 0
    while done < len(view):
        done += os.write(fd, view[done:])


def _unlink_entry(entry: os.DirEntry[str]) -> int | None:
    """Remove a listed file; its size, or None if a concurrent delete got it first."""
    try:
        size = entry.stat(follow_symlinks=False).st_size
        os.unlink(entry.path)
    except FileNotFoundError:
        return None
    return size


def _unlink_quietly(path: str | Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
