"""Small shards packed into append-only pack files, written with group commit.

Why: a shard in a file of its own costs an inode (ext4 walks its inode tables to find
one), a data fsync, a link and a directory fsync. Measured on this project's VMs, 8
writers of 256 KiB shards (the shards of a 1 MiB object): 0.72-0.98 ms of CPU per shard
as files against 0.14-0.18 appended to a pack with one fdatasync per batch of writers,
and twice the throughput. The pack is the layout of Haystack, Bitcask and SeaweedFS
volumes; it holds whole shards up to PACK_MAX_SHARD (written in one request), larger or
streamed shards stay files (_disk.py).

Layout under the data directory:
    packs/<number, 16 hex digits>.pack
    packs/<number>.idx      the records of a sealed pack, so opening does not read it

A pack starts with one 4 KiB block: magic and a random 64-bit nonce. Records follow, each
starting on a 4 KiB boundary (O_DIRECT):
    header  magic "KSPR" | kind (1 shard, 2 deletion) | name length | partition |
            payload length | mtime | payload xxh3-64 | name | header xxh3-64
    payload (shard bytes), then zeros up to the next 4 KiB boundary
Both checksums are seeded with the pack's nonce, so bytes a user stored (shard payloads
hold object bytes verbatim) can never pass for a record.

Rules:
- One writer at a time appends (the leader of the batch: the first waiting thread);
  records are acknowledged only after the batch's fdatasync. The order of records in the
  packs (pack number, then offset) is the order of operations: opening replays every pack
  in that order, the last record of a key wins (a shard, or its deletion).
- The index (partition -> name -> where) lives in memory. It changes under one lock in the
  same order as records are queued, so a deletion queued after a write of the same key is
  also after it in the pack, and a compaction's copy never outlives a deletion.
- A crash can leave only the last batch torn, in the last pack. Opening verifies every
  payload of the last pack and skips a bad record (header or payload) by scanning on to the
  next good header; anything it skips was never acknowledged, or is bitrot the healer
  repairs as it repairs a damaged shard file.
- A pack is sealed when full: its unused tail is cut off and the list of its records is
  written beside it (.idx, checksummed with the pack's nonce). Opening reads the lists of
  sealed packs and scans only packs without a good one (the last, or a crash between
  seal and list). Without them a volume's every pack would be read at each start.
- Sealed packs are compacted when less than half of their bytes are live: the live records
  are copied into the current pack (through the same group commit), deletions only while
  an older pack could still hold what they delete, then the pack is removed once no read
  is using its file descriptors (a pack's read fds are shared and kept open until then).
- Everything here blocks; callers run it on worker threads (or, for packed reads and
  put_async with lead_queued, on the pod's loop: see _evlane.py).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import secrets
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import xxhash

from kurastore.storage._direct import (
    ALIGN,
    Lent,
    StagingPool,
    open_direct,
    open_for_append,
    read_uncached,
    write_all_at,
)
from kurastore.storage.api import ShardId, ShardInfo
from kurastore.storage.errors import InsufficientStorage, ShardExists

__all__ = ["PACK_MAX_SHARD", "PackStore", "Place", "StagedShard", "packed_shards"]

PACK_MAX_SHARD = 1 << 20  # whole shards up to this size are packed
PACK_BYTES = 256 << 20  # a pack is sealed once it holds this much
_GROW = 64 << 20  # the current pack is extended (fallocate) this much at a time
_BATCH_BYTES = 16 << 20  # at most this much per write and fdatasync
_BATCH_RECORDS = 256  # and at most this many records (IOV_MAX is 1024)
_COMPACT_LIVE = 0.5  # a sealed pack is compacted below this share of live bytes
_SCAN_STEP = 1 << 20

_PACK_MAGIC = b"KSPACK01"
_RECORD_MAGIC = b"KSPR"
_SHARD, _DELETION = 1, 2
_FIXED = struct.Struct("<4sBBHIQdQ")  # magic kind reserved name_len partition length mtime xxh
_SUM = struct.Struct("<Q")
_IDX_MAGIC = b"KSPIDX01"
_IDX_ENTRY = struct.Struct("<BBIQQdQ")  # kind name_len partition offset length mtime end
_HEADER_MAX = _FIXED.size + 255 + _SUM.size  # names are well under 255 bytes
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)

log = logging.getLogger("kurastore.storage")


def _round_up(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Place:
    """Where a packed shard's bytes are: pack number, payload offset, length, mtime."""

    pack: int
    offset: int
    size: int
    mtime: float


@dataclass
class _Pack:
    number: int
    path: str
    nonce: int
    end: int = ALIGN  # the next record's offset
    live: int = 0  # bytes of records the index points at
    readers: int = 0  # reads using `fds` right now
    retired: bool = False
    # (buffered, O_DIRECT or -1) read fds, opened at the first read and shared by every
    # reader until the pack is removed: an open, two fcntl and a close per read cost
    # more than the system calls of the read itself.
    fds: tuple[int, int] | None = None

    def close_fds(self) -> None:
        if self.fds is not None:
            for fd in self.fds:
                if fd >= 0:
                    os.close(fd)
            self.fds = None


class _Stage:
    """A page-aligned buffer to build one record in (from the pool, or one small block for
    a deletion); the views lent out of it are released before it is given back."""

    def __init__(self, pool: StagingPool | None) -> None:
        self._pool = pool
        self.buf: mmap.mmap | None = pool.take() if pool is not None else mmap.mmap(-1, ALIGN)
        self._views: list[memoryview] = []

    def view(self, nbytes: int) -> memoryview:
        assert self.buf is not None, "a released stage"
        return self.keep(memoryview(self.buf)[:nbytes])

    def keep(self, view: memoryview) -> memoryview:
        """`view` (of this stage's buffer), to be released with the stage."""
        self._views.append(view)
        return view

    def __enter__(self) -> _Stage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        """Idempotent: a buffer given back twice would be handed to two writers."""
        if self.buf is None:
            return
        for view in self._views:
            view.release()
        buf, self.buf = self.buf, None
        if self._pool is not None:
            self._pool.give(buf)
        else:
            buf.close()


class StagedShard:
    """A shard's record buffer whose payload (`payload`, exactly the shard's bytes) the
    caller fills before handing it to put_async: a PUT body received straight into it is
    not copied into a record again (that memmove was 5 % of a pod's CPU on 1 MiB PUTs).
    Whoever holds it and does not pass it on calls `release`."""

    __slots__ = ("_stage", "payload", "record")

    def __init__(self, stage: _Stage, record: memoryview, payload: memoryview) -> None:
        self._stage = stage
        self.record = record
        self.payload = payload

    def __len__(self) -> int:
        return len(self.payload)

    def release(self) -> None:
        self._stage.release()


class _Pending:
    """A write not yet durable: the index holds this where its place will be."""

    __slots__ = ()


@dataclass
class _Op:
    kind: int
    partition: int
    name: str
    record: memoryview  # aligned, padded record bytes
    length: int  # payload bytes
    mtime: float
    # What to do with the index once durable (under the lock), or after a failure.
    on_durable: Callable[[Place], None] = field(repr=False, default=lambda place: None)
    on_failure: Callable[[], None] = field(repr=False, default=lambda: None)
    place: Place | None = None
    error: BaseException | None = None
    done: bool = False
    # put_async's completion, called outside the lock by whichever thread led the batch.
    then: Callable[[_Op], None] | None = field(repr=False, default=None)


class PackStore:
    """The packs of one pod and the index of the shards in them. Thread-safe."""

    def __init__(self, root: Path, staging: StagingPool) -> None:
        self.dir = root / "packs"
        self._staging = staging
        self._cond = threading.Condition()
        self._index: dict[int, dict[str, Place | _Pending]] = {}
        self._packs: dict[int, _Pack] = {}
        self._queue: list[_Op] = []
        self._leading = False
        # Blocking puts waiting for a leader's batch: only they, and the committer when
        # something is left queued, are woken when a batch ends (each wake-up of a thread
        # that has nothing to do is two context switches and a GIL hand-over).
        self._waiting = 0
        self._committer: threading.Thread | None = None
        self._closing = False
        self._current: _Pack | None = None  # the pack being appended to (by the leader)
        self._fd = -1  # the current pack, open for appending
        self._allocated = 0  # its size on disk (fallocate)
        self._highest = -1  # the highest pack number on disk
        # The records of the current pack so far, in order: its .idx once sealed.
        self._records: list[tuple[int, int, str, Place, int]] = []
        self.live_bytes = 0
        self.live_shards = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Replay every pack into the index; make a first pack on a new volume."""
        if not self.dir.is_dir():
            self.dir.mkdir()
            _fsync_dir(self.dir.parent)
        for leftover in self.dir.glob("*.idx.tmp"):  # a seal cut short: the scan will do
            leftover.unlink()
        numbers = sorted(int(p.name[:16], 16) for p in self.dir.glob("*.pack")
                         if len(p.name) == 21)
        index: dict[int, dict[str, Place | _Pending]] = {}
        self._highest = max(numbers, default=-1)
        for number in numbers:
            pack = self._read_pack_header(number)
            if pack is None:
                # A crash before its first block was durable: nothing was appended to it.
                # (Rot in an older pack's first block loses that pack's records, which
                # the healer rebuilds; the file is kept for a person to look at.)
                log.warning("pack %016x has no valid first block: its records are skipped",
                            number)
                continue
            self._packs[number] = pack
            last = number == self._highest
            listed = None if last else _read_index(self.dir / f"{number:016x}.idx", pack)
            records = list(_records(pack, verify=last) if listed is None else listed)
            if last:
                self._records = records
            for kind, partition, name, place, end in records:
                names = index.setdefault(partition, {})
                old = names.pop(name, None)
                if isinstance(old, Place):
                    self._packs[old.pack].live -= _record_bytes(old.size)
                if kind == _SHARD:
                    names[name] = place
                    pack.live += _record_bytes(place.size)
                if not names:
                    del index[partition]
                pack.end = end
        self._index = index
        self.live_shards = sum(len(names) for names in index.values())
        self.live_bytes = sum(p.size for names in index.values() for p in names.values()
                              if isinstance(p, Place))
        if self._highest in self._packs:
            self._open_current(self._packs[self._highest])
        else:
            self._start_pack(self._highest + 1)
        self._closing = False
        self._committer = threading.Thread(target=self._commit_queued, name="pod-pack-commit",
                                           daemon=True)
        self._committer.start()

    def close(self) -> None:
        committer = self._committer
        if committer is not None:
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            committer.join()
            self._committer = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        for pack in self._packs.values():
            pack.close_fds()

    def _read_pack_header(self, number: int) -> _Pack | None:
        path = str(self.dir / f"{number:016x}.pack")
        with open(path, "rb") as f:
            head = f.read(16)
        if len(head) < 16 or head[:8] != _PACK_MAGIC:
            return None
        return _Pack(number, path, int.from_bytes(head[8:16], "little"))

    def _open_current(self, pack: _Pack) -> None:
        """Append to `pack` from its last good record on: what lies beyond (a torn batch,
        records skipped as bad) is cut off first, so no later replay can mistake it for
        something written after the records that will follow."""
        fd, _ = open_for_append(pack.path, os.O_RDWR | os.O_CLOEXEC, 0o640)
        if os.fstat(fd).st_size > pack.end:
            os.ftruncate(fd, pack.end)
            os.fsync(fd)
        self._fd, self._allocated, self._current = fd, pack.end, pack

    def _start_pack(self, number: int) -> _Pack:
        """Make pack `number` durable (its first block, then its directory entry)."""
        pack = _Pack(number, str(self.dir / f"{number:016x}.pack"), secrets.randbits(64))
        fd, _ = open_for_append(pack.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                                0o640)
        block = mmap.mmap(-1, ALIGN)
        try:
            block[:16] = _PACK_MAGIC + pack.nonce.to_bytes(8, "little")
            os.pwritev(fd, [block], 0)
            os.fsync(fd)
        finally:
            block.close()
        _fsync_dir(self.dir)
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._allocated, self._current = fd, ALIGN, pack
        self._packs[number] = pack
        self._highest = number
        return pack

    # -- reads -------------------------------------------------------------------------------

    def place(self, partition: int, name: str) -> Place | None:
        """Where a durable packed shard is, or None."""
        with self._cond:
            found = self._index.get(partition, {}).get(name)
        return found if isinstance(found, Place) else None

    def holds(self, partition: int, name: str) -> bool:
        """Is the key taken (durable, or a write on its way)?"""
        with self._cond:
            return name in self._index.get(partition, {})

    def read(self, partition: int, shard: ShardId, first: int, length: int, *,
             admit: bool, lend: bool) -> bytes | Lent | None:
        """`length` bytes of a packed shard from `first` (already within its size); None
        if it is not packed."""
        with self._cond:
            found = self._index.get(partition, {}).get(shard.name)
            if not isinstance(found, Place):
                return None
            pack = self._packs.get(found.pack)
            if pack is None:  # compaction drops what it cannot move; this guards the rest
                log.error("shard %s points at pack %016x, which is gone", shard.name, found.pack)
                return None
            if pack.fds is None:
                try:
                    fd = os.open(pack.path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    log.error("pack %016x is gone from the disk", pack.number)
                    return None  # removed behind the pod's back: the shard is lost
                try:
                    # Reads are of whole records at random places: readahead only fetched
                    # (and zero-filled, in the fallocated tail) pages nobody asked for.
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
                    pack.fds = (fd, open_direct(pack.path))
                except OSError:
                    os.close(fd)
                    raise
            fd, direct_fd = pack.fds
            pack.readers += 1
        try:
            return read_uncached(fd, found.offset + first, length, self._staging,
                                 admit=admit, lend=lend, direct_fd=direct_fd)
        finally:
            with self._cond:
                pack.readers -= 1
                if pack.retired and not pack.readers:
                    self._cond.notify_all()  # compact() waits to close the fds

    def footprint(self) -> tuple[int, int, int]:
        """(pack files, bytes in them, bytes of the records still live)."""
        with self._cond:
            packs = list(self._packs.values())
        return len(packs), sum(p.end for p in packs), sum(p.live for p in packs)

    def partitions(self) -> set[int]:
        with self._cond:
            return {p for p, names in self._index.items()
                    if any(isinstance(v, Place) for v in names.values())}

    def list(self, partition: int) -> list[ShardInfo]:
        with self._cond:
            items = list(self._index.get(partition, {}).items())
        return [ShardInfo(partition, ShardId.parse(name), place.size, place.mtime)
                for name, place in items if isinstance(place, Place)]

    def names_with_prefix(self, partition: int, prefix: str) -> list[str]:
        with self._cond:
            return [name for name, place in self._index.get(partition, {}).items()
                    if name.startswith(prefix) and isinstance(place, Place)]

    # -- writes ------------------------------------------------------------------------------

    def put(self, partition: int, shard: ShardId, data: bytes | bytearray | memoryview,
            mtime: float, exists: Callable[[], bool]) -> Place:
        """Append a whole shard and return its place once durable; ShardExists if the key is
        packed already or `exists()` (a file of the same name) says so."""
        with _Stage(self._staging) as stage:
            op = self._queue_shard(stage, partition, shard, data, mtime, exists)
            self._wait(op)
        assert op.place is not None
        return op.place

    def stage(self, name: str, length: int) -> StagedShard | None:
        """A record buffer for shard `name` of `length` bytes, to fill and pass to put_async
        as its data; None if the record would not fit a staging buffer."""
        header = _header_size(name)
        total = _round_up(header + length)
        if total > self._staging.size:
            return None
        stage = _Stage(self._staging)
        record = stage.view(total)
        return StagedShard(stage, record, stage.keep(record[header:header + length]))

    def put_async(self, partition: int, shard: ShardId,
                  data: bytes | bytearray | memoryview | StagedShard,
                  mtime: float, exists: Callable[[], bool],
                  then: Callable[[Place | None, BaseException | None], None]) -> None:
        """`put` without waiting: the shard is queued and `then(place, None)` or
        `then(None, error)` is called once it is durable or failed, from the thread that
        wrote its batch. The caller writes the batch with `lead_queued()` once it has queued
        what it has (the pod's event loop: every body completed in one loop turn goes in one
        batch), unless another leader comes first: a blocking put's thread, or the committer
        thread, which takes over whatever a busy leader left queued. ShardExists is raised
        here, before anything is queued. A StagedShard passed as `data` is put_async's from
        then on (released once settled, or when this raises)."""
        stage = data._stage if isinstance(data, StagedShard) else _Stage(self._staging)

        def finish(op: _Op) -> None:
            stage.release()
            then(op.place, op.error)

        try:
            self._queue_shard(stage, partition, shard, data, mtime, exists, finish,
                              wake=False)
        except BaseException:
            stage.release()
            raise

    def _queue_shard(self, stage: _Stage, partition: int, shard: ShardId,
                     data: bytes | bytearray | memoryview | StagedShard, mtime: float,
                     exists: Callable[[], bool], then: Callable[[_Op], None] | None = None,
                     *, wake: bool = True) -> _Op:
        """Build the shard's record in `stage` (in place when `data` is staged there) and
        queue it (the index holds a _Pending until it is durable); ShardExists if the key
        is taken."""
        name = shard.name
        if isinstance(data, StagedShard):
            record = _frame(data.record, _SHARD, partition, name, len(data), mtime)
        else:
            record = _encode(stage, _SHARD, partition, name, data, mtime)
        token = _Pending()

        def durable(place: Place) -> None:
            names = self._index.get(partition)
            if names is not None and names.get(name) is token:
                names[name] = place
                self._packs[place.pack].live += _record_bytes(place.size)
                self.live_bytes += place.size
                self.live_shards += 1

        def failed() -> None:
            names = self._index.get(partition)
            if names is not None and names.get(name) is token:
                del names[name]
                if not names:
                    del self._index[partition]

        op = _Op(_SHARD, partition, name, record, len(data), mtime, durable, failed, then=then)
        with self._cond:
            names = self._index.setdefault(partition, {})
            if name in names or exists():
                if not names:
                    del self._index[partition]
                raise ShardExists(f"shard {name} already in partition {partition}")
            names[name] = token
            self._queue.append(op)
            if wake:
                self._cond.notify_all()  # the committer (or a waiting put) leads the batch
        return op

    def delete(self, partition: int, name: str) -> int | None:
        """Record the deletion of a packed shard; its size, or None if it is not packed."""
        return self._delete(partition, name, None)

    def _delete(self, partition: int, name: str, only: Place | None) -> int | None:
        """Record the deletion of `name` (when `only`: if it is still at that place)."""
        with _Stage(None) as block:
            with self._cond:
                names = self._index.get(partition, {})
                old = names.get(name)
                if old is None or (only is not None and old != only):
                    return None
                del names[name]
                if not names:
                    self._index.pop(partition, None)
                if isinstance(old, Place):
                    self._forget(old)
                op = self._queue_deletion(block, partition, name, old)
            self._wait(op)
        return old.size if isinstance(old, Place) else 0

    def _queue_deletion(self, block: _Stage, partition: int, name: str,
                        old: Place | _Pending | None) -> _Op:
        record = _encode(block, _DELETION, partition, name, b"", 0.0)

        def failed() -> None:  # the deletion is not on disk: the shard is still there
            names = self._index.setdefault(partition, {})
            if isinstance(old, Place) and name not in names:
                names[name] = old
                self._packs[old.pack].live += _record_bytes(old.size)
                self.live_bytes += old.size
                self.live_shards += 1

        op = _Op(_DELETION, partition, name, record, 0, 0.0, on_failure=failed)
        self._queue.append(op)
        return op

    def _forget(self, place: Place) -> None:
        pack = self._packs.get(place.pack)
        if pack is not None:
            pack.live -= _record_bytes(place.size)
        self.live_bytes -= place.size
        self.live_shards -= 1

    def _wait(self, op: _Op) -> None:
        """Wait until `op` is durable, leading batches while nobody else does."""
        while True:
            with self._cond:
                if op.done:
                    break
                if self._leading:
                    self._waiting += 1
                    try:
                        self._cond.wait()
                    finally:
                        self._waiting -= 1
                    continue
                finished = self._lead_one()
            _complete(finished)
        if op.error is not None:
            raise op.error

    def lead_queued(self) -> None:
        """Write one batch of what is queued on the calling thread, and complete its
        put_async writes here. Why: handing the batch to the committer thread cost 4-5
        context switches per batch (its wake-up, and the GIL taken back from the busy loop
        after each system call) on top of the loop's wake-up for the answers. If another
        thread leads now, it returns at once: the committer takes what is left once that
        batch is done."""
        with self._cond:
            if self._leading or not self._queue:
                return
            finished = self._lead_one()  # wakes the committer if more is queued
        _complete(finished)

    def _commit_queued(self) -> None:
        """The committer thread: leads a batch whenever writes are queued and nobody else
        leads, so put_async's writes never wait for a blocking put to come along."""
        while True:
            with self._cond:
                while self._leading or not (self._queue or self._closing):
                    self._cond.wait()
                if not self._queue:
                    return  # closing, and nothing left to write
                finished = self._lead_one()
            _complete(finished)

    def _lead_one(self) -> list[_Op]:
        """Lead one batch (lock held); the put_async ops it finished, to complete unlocked."""
        self._leading = True
        try:
            return self._lead()
        finally:
            self._leading = False
            if self._waiting or self._queue:  # a waiting put, or work for the committer
                self._cond.notify_all()

    def _lead(self) -> list[_Op]:
        """Write one batch from the queue (called with the lock held, released meanwhile);
        returns the batch's put_async ops."""
        batch, nbytes = [], 0
        while self._queue and len(batch) < _BATCH_RECORDS and (
                not batch or nbytes + len(self._queue[0].record) <= _BATCH_BYTES):
            op = self._queue.pop(0)
            batch.append(op)
            nbytes += len(op.record)
        self._cond.release()
        error: BaseException | None = None
        try:
            places = self._append(batch, nbytes)
        except BaseException as exc:  # every waiter hears it
            error, places = exc, []
        finally:
            self._cond.acquire()
        for i, op in enumerate(batch):
            if error is None:
                op.place = places[i]
                op.on_durable(places[i])
            else:
                op.error = _storage_error(error)
                op.on_failure()
            op.done = True
        return [op for op in batch if op.then is not None]

    def _append(self, batch: list[_Op], nbytes: int) -> list[Place]:
        """Write `batch` at the end of the current pack (a new one when it is full) and
        fdatasync. Only the leader runs this."""
        current = self._current
        assert current is not None, "append before open"
        if current.end > ALIGN and current.end + nbytes > PACK_BYTES:
            self._seal(current)
            current = self._start_pack(self._highest + 1)
        start = current.end
        if start + nbytes > self._allocated:
            grow = max(_GROW, start + nbytes - self._allocated)
            try:
                os.posix_fallocate(self._fd, self._allocated, grow)
                self._allocated += grow
            except OSError:
                pass  # no room to reserve ahead, or no fallocate: the write extends the file
        places, offset = [], start
        written_records = []
        for op in batch:
            header = _header_size(op.name)
            places.append(Place(current.number, offset + header, op.length, op.mtime))
            offset += len(op.record)
            written_records.append((op.kind, op.partition, op.name, places[-1], offset))
        for op in batch:
            _seal_record(op.record, op.name, op.length, current.nonce)
        write_all_at(self._fd, [op.record for op in batch], start, sync=True)
        current.end = offset
        self._records.extend(written_records)
        return places

    def _seal(self, pack: _Pack) -> None:
        """Cut the preallocated tail off a full pack and write the list of its records."""
        os.ftruncate(self._fd, pack.end)
        os.fsync(self._fd)
        _write_index(self.dir / f"{pack.number:016x}.idx", pack, self._records)
        self._records = []

    # -- compaction --------------------------------------------------------------------------

    def compactable(self) -> list[int]:
        """Sealed packs with less than half of their bytes live, oldest first."""
        with self._cond:
            current = self._current.number if self._current else -1
            return [n for n, p in sorted(self._packs.items())
                    if n != current and not p.retired and p.live < _COMPACT_LIVE * p.end]

    def compact(self, number: int) -> int:
        """Copy the live records of sealed pack `number` into the current pack, then remove
        it; returns the bytes reclaimed."""
        with self._cond:
            pack = self._packs.get(number)
            if pack is None or pack is self._current:
                return 0
            oldest = number == min(self._packs)
        listed = _read_index(self.dir / f"{number:016x}.idx", pack)
        for kind, partition, name, place, _ in listed or _records(pack, verify=False):
            if kind == _SHARD:
                self._move(pack, partition, name, place)
            elif not oldest:
                self._carry_deletion(partition, name)
        with self._cond:
            pack.retired = True
            while pack.readers:
                self._cond.wait()
            del self._packs[number]
            pack.close_fds()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.dir / f"{number:016x}.idx")
        os.unlink(pack.path)
        _fsync_dir(self.dir)
        return pack.end

    def _move(self, pack: _Pack, partition: int, name: str, place: Place) -> None:
        with self._cond:
            if self._index.get(partition, {}).get(name) != place:
                return  # deleted, or a later copy: nothing to keep
        fd = os.open(pack.path, os.O_RDONLY | os.O_CLOEXEC)  # read_uncached may leave
        try:                                                # O_DIRECT set: one fd a read
            data = read_uncached(fd, place.offset, place.size, self._staging)
        finally:
            os.close(fd)
        assert isinstance(data, bytes)
        if len(data) != place.size:
            # Cut short on disk: forget it, so reads answer "missing" (and the gateway
            # queues it for healing) instead of pointing into the pack removed below.
            log.error("shard %s of pack %016x is cut short on disk: dropped", name, pack.number)
            self._delete(partition, name, place)
            return
        with _Stage(self._staging) as stage:
            record = _encode(stage, _SHARD, partition, name, data, place.mtime)

            def durable(new: Place) -> None:
                names = self._index.get(partition, {})
                if names.get(name) == place:
                    names[name] = new
                    self._packs[place.pack].live -= _record_bytes(place.size)
                    self._packs[new.pack].live += _record_bytes(new.size)

            op = _Op(_SHARD, partition, name, record, place.size, place.mtime, durable)
            with self._cond:
                if self._index.get(partition, {}).get(name) != place:
                    return
                self._queue.append(op)
            self._wait(op)

    def _carry_deletion(self, partition: int, name: str) -> None:
        """Keep a deletion that an older pack's record may still need, unless the key was
        written again since (that write supersedes the older record anyway)."""
        with _Stage(None) as block:
            with self._cond:
                if name in self._index.get(partition, {}):
                    return
                op = self._queue_deletion(block, partition, name, None)
            self._wait(op)



def _complete(ops: list[_Op]) -> None:
    for op in ops:
        assert op.then is not None
        try:
            op.then(op)
        except Exception:  # one caller's bad callback must not lose the others' answers
            log.exception("completing a packed write of %s failed", op.name)


def packed_shards(root: Path) -> dict[tuple[int, str], tuple[str, Place]]:
    """(partition, shard name) -> (pack file, place) for every shard the packs of the volume
    at `root` hold, replayed read-only: for tools and tests looking at a volume while its
    pod may be running (a record being written then may be missed)."""
    found: dict[tuple[int, str], tuple[str, Place]] = {}
    directory = root / "packs"
    if not directory.is_dir():
        return found
    for path in sorted(directory.glob("*.pack")):
        try:
            with open(path, "rb") as f:
                head = f.read(16)
        except FileNotFoundError:
            continue  # compacted meanwhile
        if len(head) < 16 or head[:8] != _PACK_MAGIC or len(path.name) != 21:
            continue
        pack = _Pack(int(path.name[:16], 16), str(path), int.from_bytes(head[8:16], "little"))
        try:
            listed = _read_index(path.with_suffix(".idx"), pack)
            for kind, partition, name, place, _ in listed or _records(pack, verify=False):
                if kind == _SHARD:
                    found[(partition, name)] = (pack.path, place)
                else:
                    found.pop((partition, name), None)
        except FileNotFoundError:
            continue
    return found


def _records(pack: _Pack, *, verify: bool) -> Iterator[tuple[int, int, str, Place, int]]:
    """(kind, partition, name, place, next offset) of every good record of `pack`, in order.
    A bad header is skipped by looking for the next good one on a 4 KiB boundary; with
    `verify`, a record whose payload fails its checksum is skipped too."""
    with open(pack.path, "rb", buffering=0) as f:
        size = os.fstat(f.fileno()).st_size
        offset = ALIGN
        while offset < size:
            head = os.pread(f.fileno(), _HEADER_MAX, offset)
            parsed = _decode_header(head, pack.nonce)
            if parsed is None:
                offset = _next_header(f.fileno(), offset + ALIGN, size, pack.nonce)
                continue
            kind, partition, name, length, mtime, payload_sum, header = parsed
            end = offset + _round_up(header + length)
            if end > size:
                break
            if verify and kind == _SHARD:
                payload = os.pread(f.fileno(), length, offset + header)
                if xxhash.xxh3_64_intdigest(payload, seed=pack.nonce) != payload_sum:
                    offset = _next_header(f.fileno(), offset + ALIGN, size, pack.nonce)
                    continue
            yield kind, partition, name, Place(pack.number, offset + header, length, mtime), end
            offset = end


def _write_index(path: Path, pack: _Pack,
                 records: list[tuple[int, int, str, Place, int]]) -> None:
    """The list of a sealed pack's records, durably (temporary file, rename, fsyncs)."""
    body = bytearray()
    for kind, partition, name, place, end in records:
        raw = name.encode("ascii")
        body += _IDX_ENTRY.pack(kind, len(raw), partition, place.offset, place.size,
                                place.mtime, end) + raw
    head = _IDX_MAGIC + _SUM.pack(pack.nonce) + _SUM.pack(
        xxhash.xxh3_64_intdigest(bytes(body), seed=pack.nonce))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(head + body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _read_index(path: Path, pack: _Pack) -> list[tuple[int, int, str, Place, int]] | None:
    """A sealed pack's records from its list; None if there is no good list."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    head = len(_IDX_MAGIC) + 2 * _SUM.size
    if len(raw) < head or raw[:len(_IDX_MAGIC)] != _IDX_MAGIC:
        return None
    (nonce,) = _SUM.unpack_from(raw, len(_IDX_MAGIC))
    (stored,) = _SUM.unpack_from(raw, len(_IDX_MAGIC) + _SUM.size)
    body = memoryview(raw)[head:]
    if nonce != pack.nonce or xxhash.xxh3_64_intdigest(body, seed=nonce) != stored:
        log.warning("pack %016x: its list is damaged, the pack is scanned", pack.number)
        return None
    records, at = [], 0
    while at < len(body):
        kind, name_len, partition, offset, length, mtime, end = _IDX_ENTRY.unpack_from(body, at)
        at += _IDX_ENTRY.size
        name = bytes(body[at:at + name_len]).decode("ascii")
        at += name_len
        records.append((kind, partition, name, Place(pack.number, offset, length, mtime), end))
    return records


def _next_header(fd: int, offset: int, size: int, nonce: int) -> int:
    """The first 4 KiB boundary from `offset` holding a good header, else `size`."""
    while offset < size:
        chunk = os.pread(fd, min(_SCAN_STEP, size - offset), offset)
        if not chunk:
            break
        for at in range(0, len(chunk), ALIGN):
            if chunk[at:at + 4] == _RECORD_MAGIC and _decode_header(
                    os.pread(fd, _HEADER_MAX, offset + at), nonce) is not None:
                return offset + at
        offset += len(chunk)
    return size


def _decode_header(head: bytes, nonce: int
                   ) -> tuple[int, int, str, int, float, int, int] | None:
    if len(head) < _FIXED.size or head[:4] != _RECORD_MAGIC:
        return None
    _, kind, _, name_len, partition, length, mtime, payload_sum = _FIXED.unpack_from(head)
    header = _FIXED.size + name_len + _SUM.size
    if kind not in (_SHARD, _DELETION) or len(head) < header or length > PACK_MAX_SHARD:
        return None
    (stored,) = _SUM.unpack_from(head, header - _SUM.size)
    if xxhash.xxh3_64_intdigest(head[:header - _SUM.size], seed=nonce) != stored:
        return None
    try:
        name = head[_FIXED.size:_FIXED.size + name_len].decode("ascii")
        ShardId.parse(name)
    except (UnicodeDecodeError, ValueError):
        return None
    return kind, partition, name, length, mtime, payload_sum, header


def _header_size(name: str) -> int:
    return _FIXED.size + len(name) + _SUM.size


def _record_bytes(size: int) -> int:
    """Bytes a record takes in its pack (names are 36-80 bytes: one size fits all)."""
    return _round_up(_FIXED.size + 80 + _SUM.size + size)


def _encode(stage: _Stage, kind: int, partition: int, name: str,
            data: bytes | bytearray | memoryview, mtime: float) -> memoryview:
    """The record, padded to 4 KiB, built in `stage`. The nonce is not known yet (the
    pack may roll over before the write): the leader seals it in (_seal_record)."""
    header = _header_size(name)
    view = stage.view(_round_up(header + len(data)))
    view[header:header + len(data)] = memoryview(data).cast("B")
    return _frame(view, kind, partition, name, len(data), mtime)


def _frame(record: memoryview, kind: int, partition: int, name: str, length: int,
           mtime: float) -> memoryview:
    """Write the header and the padding around a payload already in place in `record`."""
    raw = name.encode("ascii")
    header = _FIXED.size + len(raw) + _SUM.size
    record[header + length:] = bytes(len(record) - header - length)
    _FIXED.pack_into(record, 0, _RECORD_MAGIC, kind, 0, len(raw), partition, length, mtime, 0)
    record[_FIXED.size:_FIXED.size + len(raw)] = raw
    return record


def _seal_record(record: memoryview, name: str, length: int, nonce: int) -> None:
    """Write the nonce-seeded checksums into an encoded record."""
    header = _header_size(name)
    payload_sum = xxhash.xxh3_64_intdigest(record[header:header + length], seed=nonce)
    _SUM.pack_into(record, _FIXED.size - _SUM.size, payload_sum)
    _SUM.pack_into(record, header - _SUM.size,
                   xxhash.xxh3_64_intdigest(record[:header - _SUM.size], seed=nonce))


def _storage_error(exc: BaseException) -> BaseException:
    if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
        return InsufficientStorage("disk full")
    return exc

