"""Connections, threads and transactions of the SQLite backend.

Durability: the database runs in WAL mode with `synchronous=NORMAL` by default. A
transaction is acknowledged only after COMMIT has written it to the WAL file, so an
acknowledged commit survives a crash of the process (the OS holds the WAL pages).
On power loss or a kernel crash the transactions committed since the last WAL sync
(at most the last checkpoint interval) may be rolled back, but the database is never
corrupt. `synchronous="FULL"` fsyncs the WAL at every commit and makes acknowledged
commits survive power loss too; group commit keeps that at one fsync per batch.

Writes: each op runs inside its own SAVEPOINT of one `BEGIN IMMEDIATE` transaction that
commits a whole batch at once (group commit). With `synchronous=NORMAL` (a COMMIT writes
the WAL but does not fsync it) the batch is every write queued during one turn of the
event loop, committed on the loop's own thread at the start of the next: the hop to a
writer thread and back cost a sixth of a 4 KiB PUT's CPU (0.94-1.08 against 0.79-0.90
ms, two alternated pairs of runs, 32 clients) in context switches and GIL handoffs. A
batch that finds the database locked (another process writing) goes to the writer
thread instead, which waits for the lock (busy_timeout) so the loop never does; with
FULL or EXTRA, whose COMMIT fsyncs, every write goes there: callers enqueue ops and the
writer takes everything queued (up to `max_batch`) as one batch. An op that raises is
rolled back to its savepoint alone and its caller gets the exception; the others commit.
Readers run on a small pool of threads, each with its own connection, each read in one
snapshot transaction. The loop and the writer thread never write at once (the thread
only gets batches the loop could not begin), so "database is locked" comes from another
process, and the writer thread waits it out with busy_timeout.

Point reads (a few rows by key: a version, a bucket, an access key) run on the event
loop's own thread instead, on a connection that never waits (busy_timeout 0): the hop to
a reader thread and back cost a tenth of a 4 KiB GET's gateway CPU (0.59 against 0.53 ms,
medians of four alternated runs), and reader threads running Python took the GIL from the
loop after each of its sends, which showed as tail latency. A point read
that finds the database busy (another process writing with an exclusive lock, a WAL
being recovered) goes to the reader threads, so the loop never waits on a lock.

Checkpoints: SQLite's automatic checkpoint runs inside the COMMIT that crosses its
threshold, so one batch in every few hundred paid two fsyncs and the copy of the WAL
into the database (7-11 ms on these machines) and its callers saw it as latency. The
writer turns it off, and a checkpointer thread with its own connection runs a PASSIVE
checkpoint (it never blocks the writer or readers) within `checkpoint_interval_s` of
any commit instead.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kurastore.metadata._sqlite_schema import migrate
from kurastore.metadata.errors import MetadataError, MetadataUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
BUSY_TIMEOUT_MS = 60_000
WAL_LIMIT_BYTES = 64 << 20
CHECKPOINT_INTERVAL_S = 0.5
_STOP = object()


class WriteTx:
    """What a write op sees: the writer's connection inside the batch transaction,
    and the store-wide sequence (version order, upload order), read once per batch."""

    __slots__ = ("_dirty", "_next", "conn")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._next: int | None = None
        self._dirty = False

    def next_seq(self) -> int:
        if self._next is None:
            row = self.conn.execute("SELECT value FROM counters WHERE name = 'seq'").fetchone()
            self._next = int(row[0])
        # Numbers used by an op that then rolls back are skipped, never reused.
        self._next += 1
        self._dirty = True
        return self._next

    def flush(self) -> None:
        if self._dirty:
            self.conn.execute("UPDATE counters SET value = ? WHERE name = 'seq'", (self._next,))


@dataclass
class _Op:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any]
    outcome: tuple[bool, Any] = field(default=(False, None))


def connect(path: str, *, synchronous: str, cache_kib: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal" and path != ":memory:":
        raise MetadataError(f"cannot put {path} in WAL mode (got {mode})")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute(f"PRAGMA cache_size = -{cache_kib}")
    conn.execute("PRAGMA temp_store = MEMORY")
    # Without a limit the WAL file keeps the size of the largest transaction ever run.
    conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
    return conn


class Executor:
    """Runs write ops on the loop or the writer thread (group commit) and reads on
    reader threads or the loop.

    Must be used from the event loop that opened it."""

    def __init__(
        self,
        path: str,
        *,
        readers: int = 4,
        max_batch: int = 256,
        max_queued_writes: int = 4096,
        synchronous: str = "NORMAL",
    ) -> None:
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ValueError("synchronous must be NORMAL, FULL or EXTRA")
        self._path = path
        self._synchronous = synchronous.upper()
        self._max_batch = max_batch
        self._loop = asyncio.get_running_loop()
        self._writes: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._reads: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._write_slots = asyncio.Semaphore(max_queued_writes)
        self._threads: list[threading.Thread] = []
        self._reader_count = readers
        self._closed = False
        # A file database gets the background checkpointer; ":memory:" has no WAL.
        self._checkpoints = path != ":memory:" and not path.startswith("file::memory:")
        self._wrote = threading.Event()  # commits since the last checkpoint
        self._stopping = threading.Event()
        self._point: sqlite3.Connection | None = None  # the loop thread's (read_point)
        self._loop_writer: sqlite3.Connection | None = None  # the loop thread's (write)
        self._loop_batch: list[_Op] = []  # writes queued for this loop turn's commit

    async def start(self) -> None:
        """Opens the writer connection and migrates the schema, then starts the threads."""
        ready: asyncio.Future[None] = self._loop.create_future()
        writer = threading.Thread(
            target=self._writer_main, args=(ready,), name="kurastore-sqlite-writer", daemon=True
        )
        writer.start()
        self._threads.append(writer)
        await ready
        if self._checkpoints:  # a file: ":memory:" connections would not share it
            self._point = connect(self._path, synchronous=self._synchronous, cache_kib=16384)
            self._point.execute("PRAGMA busy_timeout = 0")  # never wait on the loop
            if self._synchronous == "NORMAL":  # a COMMIT that does not fsync: on the loop
                self._loop_writer = connect(self._path, synchronous=self._synchronous,
                                            cache_kib=16384)
                self._loop_writer.execute("PRAGMA busy_timeout = 0")  # never wait on the loop
                self._loop_writer.execute("PRAGMA wal_autocheckpoint = 0")
            t = threading.Thread(
                target=self._checkpointer_main, name="kurastore-sqlite-checkpointer",
                daemon=True,
            )
            t.start()
            self._threads.append(t)
        for i in range(self._reader_count):
            t = threading.Thread(
                target=self._reader_main, name=f"kurastore-sqlite-reader-{i}", daemon=True
            )
            t.start()
            self._threads.append(t)

    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs fn(tx, *args) in the next group-commit batch; returns after COMMIT."""
        if self._closed:
            raise MetadataUnavailable("the metadata store is closed")
        async with self._write_slots:
            if self._closed:  # closed while this caller waited for a slot
                raise MetadataUnavailable("the metadata store is closed")
            future: asyncio.Future[T] = self._loop.create_future()
            if self._loop_writer is not None:
                self._loop_batch.append(_Op(fn, args, future))
                if len(self._loop_batch) == 1:  # every write of this turn, one commit
                    self._loop.call_soon(self._commit_on_loop)
            else:
                self._writes.put(_Op(fn, args, future))
            # A queued op cannot be withdrawn: cancelling the caller cancels only this
            # future, the op still commits or fails (and _settle_one skips it).
            return await future

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs fn(conn, *args) in one read transaction on a reader thread."""
        if self._closed:
            raise MetadataUnavailable("the metadata store is closed")
        future: asyncio.Future[T] = self._loop.create_future()
        self._reads.put(_Op(fn, args, future))
        return await future

    async def read_point(self, fn: Callable[..., T], *args: Any) -> T:
        """Runs fn(conn, *args), a read of a few rows by key, in one read transaction
        on the event loop's thread; on the reader threads if the database is busy."""
        conn = self._point
        if conn is None or self._closed:
            return await self.read(fn, *args)
        try:
            conn.execute("BEGIN")
            try:
                return fn(conn, *args)
            finally:
                conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise _public(exc) from exc
        return await self.read(fn, *args)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._commit_on_loop()  # the writes already queued for this turn
        if self._loop_writer is not None:
            self._loop_writer.close()
            self._loop_writer = None
        if self._point is not None:
            self._point.close()
        self._stopping.set()
        self._wrote.set()  # wakes the checkpointer so it can stop
        self._writes.put(_STOP)
        for _ in range(self._reader_count):
            self._reads.put(_STOP)
        threads, self._threads = self._threads, []
        await asyncio.to_thread(lambda: [t.join() for t in threads])

    # --- threads ---------------------------------------------------------------------
    def _writer_main(self, ready: asyncio.Future[None]) -> None:
        try:
            conn = connect(self._path, synchronous=self._synchronous, cache_kib=65536)
            migrate(conn)
            if self._checkpoints:
                conn.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer does it
                self._wrote.set()  # the migration's commits, if any
        except BaseException as exc:
            self._loop.call_soon_threadsafe(_settle_one, ready, (False, exc))
            return
        self._loop.call_soon_threadsafe(_settle_one, ready, (True, None))
        try:
            stop = False
            while not stop:
                first = self._writes.get()
                if first is _STOP:
                    break
                batch: list[_Op] = [first]
                while len(batch) < self._max_batch:
                    try:
                        nxt = self._writes.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is _STOP:
                        stop = True
                        break
                    batch.append(nxt)
                self._run_batch(conn, batch)
                self._wrote.set()
                self._loop.call_soon_threadsafe(_settle, batch)
        finally:
            conn.close()  # the last connection to close checkpoints what is left

    def _checkpointer_main(self) -> None:
        conn = connect(self._path, synchronous=self._synchronous, cache_kib=1024)
        try:
            while not self._stopping.is_set():
                self._wrote.wait()
                # Let a few batches gather: one checkpoint copies them all.
                if self._stopping.wait(CHECKPOINT_INTERVAL_S):
                    break
                self._wrote.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:
                    log.warning("metadata checkpoint failed (retried later): %s", exc)
                    self._wrote.set()
        finally:
            conn.close()

    def _commit_on_loop(self) -> None:
        """Commit the writes queued in the last loop turn, on the loop, in batches of at
        most max_batch; a batch that finds the database locked by another connection goes
        to the writer thread, which waits for the lock instead of the loop."""
        batch, self._loop_batch = self._loop_batch, []
        conn = self._loop_writer
        if not batch or conn is None:
            return
        for first in range(0, len(batch), self._max_batch):
            ops = batch[first:first + self._max_batch]
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                    for op in ops:
                        self._writes.put(op)
                    continue
                log.error("metadata write batch of %d ops failed: %s", len(ops), exc)
                for op in ops:
                    op.outcome = (False, MetadataUnavailable(f"metadata write failed: {exc}"))
                _settle(ops)
                continue
            self._run_batch(conn, ops, begun=True)
            self._wrote.set()
            _settle(ops)

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Op], *,
                   begun: bool = False) -> None:
        try:
            if not begun:
                conn.execute("BEGIN IMMEDIATE")
            tx = WriteTx(conn)
            for op in batch:
                conn.execute("SAVEPOINT op")
                try:
                    op.outcome = (True, op.fn(tx, *op.args))
                except Exception as exc:
                    conn.execute("ROLLBACK TO op")
                    op.outcome = (False, _public(exc))
                conn.execute("RELEASE op")
            tx.flush()
            conn.execute("COMMIT")
        except Exception as exc:
            # The transaction itself failed (disk full, I/O error): nothing of the
            # batch is committed, and every caller must hear it.
            log.error("metadata write batch of %d ops failed: %s", len(batch), exc)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            for op in batch:
                op.outcome = (False, MetadataUnavailable(f"metadata write failed: {exc}"))

    def _reader_main(self) -> None:
        conn = connect(self._path, synchronous=self._synchronous, cache_kib=16384)
        try:
            while True:
                op = self._reads.get()
                if op is _STOP:
                    break
                try:
                    conn.execute("BEGIN")
                    try:
                        op.outcome = (True, op.fn(conn, *op.args))
                    finally:
                        conn.execute("COMMIT")
                except Exception as exc:
                    op.outcome = (False, _public(exc))
                self._loop.call_soon_threadsafe(_settle_one, op.future, op.outcome)
        finally:
            conn.close()


def _public(exc: Exception) -> Exception:
    """SQLite's own operational errors become MetadataUnavailable; domain errors pass."""
    if isinstance(exc, sqlite3.OperationalError):
        return MetadataUnavailable(f"metadata database error: {exc}")
    return exc


def _settle_one(future: asyncio.Future[Any], outcome: tuple[bool, Any]) -> None:
    if future.done():
        return
    ok, value = outcome
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _settle(batch: list[_Op]) -> None:
    for op in batch:
        _settle_one(op.future, op.outcome)
