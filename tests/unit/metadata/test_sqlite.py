"""What only the SQLite backend has: its file, pragmas, migrations, durability."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from kurastore.metadata import BucketRecord, MetadataError, MetadataUnavailable, ObjectVersion
from kurastore.metadata import _sqlite_schema as schema
from kurastore.metadata.sqlite import SQLiteStore

KEY = b"s" * 32


def version(key: str) -> ObjectVersion:
    return ObjectVersion("b", key, "", "0" * 32, 1, "e", 1.0, inline=b"x")


async def test_wal_and_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "m.db")
    store = await SQLiteStore.open(path, secret_key=KEY)
    await store.create_bucket(BucketRecord("b", "o", 1.0))
    await store.commit_version(version("k"))
    await store.close()
    with pytest.raises(MetadataUnavailable):
        await store.get_bucket("b")
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("SELECT max(version) FROM schema_version").fetchone()[0] == (
        schema.LATEST_VERSION
    )
    raw.close()
    again = await SQLiteStore.open(path, secret_key=KEY)
    assert (await again.get_version("b", "k")).inline == b"x"
    await again.close()


async def test_commits_reach_the_database_file_by_background_checkpoints(
    tmp_path: Path,
) -> None:
    # No commit pays for a checkpoint (the writer's autocheckpoint is off), yet committed
    # rows still reach the main database file soon, without any close: a copy of that
    # file alone (no -wal) holds them.
    path = tmp_path / "m.db"
    store = await SQLiteStore.open(str(path), secret_key=KEY)
    try:
        await store.create_bucket(BucketRecord("b", "o", 1.0))
        await asyncio.gather(*(store.commit_version(version(f"k{i}")) for i in range(300)))
        assert (tmp_path / "m.db-wal").stat().st_size > 0
        deadline = time.monotonic() + 10
        while True:
            (tmp_path / "copy.db").write_bytes(path.read_bytes())
            copy = sqlite3.connect(tmp_path / "copy.db")
            try:
                found = copy.execute("SELECT count(*) FROM versions").fetchone()[0]
            except sqlite3.OperationalError:  # not even the schema is in the file yet
                found = 0
            finally:
                copy.close()
            if found == 300 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert found == 300
        assert (await store.get_version("b", "k299")).inline == b"x"
    finally:
        await store.close()


async def test_migration_runner_upgrades_in_place(tmp_path: Path, monkeypatch) -> None:
    path = str(tmp_path / "m.db")
    store = await SQLiteStore.open(path, secret_key=KEY)
    await store.create_bucket(BucketRecord("b", "o", 1.0))
    await store.close()
    released = schema.MIGRATIONS
    top = schema.LATEST_VERSION
    step = (top + 1, ("CREATE TABLE lifecycle (bucket_id INTEGER PRIMARY KEY, rules TEXT)",))
    monkeypatch.setattr(schema, "MIGRATIONS", (*released, step))
    monkeypatch.setattr(schema, "LATEST_VERSION", top + 1)
    upgraded = await SQLiteStore.open(path, secret_key=KEY)
    assert (await upgraded.get_bucket("b")).owner == "o"  # data kept
    await upgraded.close()
    raw = sqlite3.connect(path)
    versions = [r[0] for r in raw.execute("SELECT version FROM schema_version ORDER BY 1")]
    assert versions == [*range(1, top + 2)]
    raw.execute("SELECT rules FROM lifecycle").fetchall()
    raw.close()
    monkeypatch.setattr(schema, "MIGRATIONS", released)
    monkeypatch.setattr(schema, "LATEST_VERSION", top)
    with pytest.raises(MetadataError, match="newer than this code"):
        await SQLiteStore.open(path, secret_key=KEY)


async def test_cancelled_caller_still_commits(tmp_path: Path) -> None:
    store = await SQLiteStore.open(str(tmp_path / "m.db"), secret_key=KEY)
    await store.create_bucket(BucketRecord("b", "o", 1.0))
    tasks = [asyncio.create_task(store.commit_version(version(f"k{i}"))) for i in range(50)]
    await asyncio.sleep(0)
    for t in tasks[::2]:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # A queued commit cannot be withdrawn: cancelling only stops the caller waiting.
    assert (await store.bucket_usage("b"))[0] == 50
    await store.close()


def test_acknowledged_commits_survive_a_killed_process(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    child = textwrap.dedent(f"""
        import asyncio, os, signal
        from kurastore.metadata import BucketRecord, ObjectVersion
        from kurastore.metadata.sqlite import SQLiteStore
        async def main():
            s = await SQLiteStore.open({str(path)!r}, secret_key=b"s" * 32)
            await s.create_bucket(BucketRecord("b", "o", 1.0))
            await asyncio.gather(*(s.commit_version(ObjectVersion(
                "b", f"k{{i}}", "", "0" * 32, 1, "e", 1.0, inline=b"x")) for i in range(300)))
            os.kill(os.getpid(), signal.SIGKILL)  # no close, no checkpoint
        asyncio.run(main())
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()

    async def count() -> int:
        store = await SQLiteStore.open(str(path), secret_key=KEY)
        try:
            return (await store.bucket_usage("b"))[0]
        finally:
            await store.close()

    assert asyncio.run(count()) == 300


async def test_many_writers_never_see_locked(tmp_path: Path) -> None:
    """Two stores on one file (as two processes would): writes wait, never fail."""
    path = str(tmp_path / "m.db")
    one = await SQLiteStore.open(path, secret_key=KEY)
    two = await SQLiteStore.open(path, secret_key=KEY)
    await one.create_bucket(BucketRecord("b", "o", 1.0))
    start = time.time()
    await asyncio.gather(*(
        (one if i % 2 else two).commit_version(version(f"k{i}")) for i in range(400)
    ))
    assert time.time() - start < 30
    assert (await one.bucket_usage("b"))[0] == 400
    await one.close()
    await two.close()


class _BusyOnce:
    """The point connection as another process's exclusive lock would leave it: its
    first query answers "database is locked" (busy_timeout 0 never waits)."""

    def __init__(self, conn: sqlite3.Connection, error: sqlite3.OperationalError) -> None:
        self.conn, self.error, self.failed = conn, error, 0

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
        if sql.lstrip().upper().startswith("SELECT") and not self.failed:
            self.failed += 1
            raise self.error
        return self.conn.execute(sql, *args)


def _sqlite_error(message: str, code: int) -> sqlite3.OperationalError:
    error = sqlite3.OperationalError(message)
    error.sqlite_errorcode = code
    return error


async def test_point_reads_see_commits_and_never_wait_on_a_lock(tmp_path: Path) -> None:
    """Point reads (versions, buckets, keys) run on the event loop's own connection;
    one that finds the database busy is answered by a reader thread instead, and any
    other database error is MetadataUnavailable, as for every read."""
    store = await SQLiteStore.open(str(tmp_path / "m.db"), secret_key=KEY)
    await store.create_bucket(BucketRecord("b", "o", 1.0))
    await store.commit_version(version("k"))
    assert (await store.get_version("b", "k")).inline == b"x"  # read-your-writes
    point = store._ex._point
    busy = _BusyOnce(point, _sqlite_error("database is locked", sqlite3.SQLITE_BUSY))
    store._ex._point = busy
    assert (await store.get_version("b", "k")).inline == b"x"
    assert busy.failed == 1 and not point.in_transaction
    store._ex._point = _BusyOnce(point, _sqlite_error("disk I/O error", sqlite3.SQLITE_IOERR))
    with pytest.raises(MetadataUnavailable):
        await store.get_bucket("b")
    assert not point.in_transaction
    store._ex._point = point
    assert (await store.get_bucket("b")).name == "b"
    await store.close()


async def test_writes_wait_out_another_writers_lock_without_stopping_the_loop(
    tmp_path: Path,
) -> None:
    """Writes commit on the event loop's thread unless the database is locked; then the
    writer thread waits for the lock, and the loop keeps serving meanwhile."""
    path = str(tmp_path / "m.db")
    store = await SQLiteStore.open(path, secret_key=KEY)
    await store.create_bucket(BucketRecord("b", "o", 1.0))
    other = sqlite3.connect(path, isolation_level=None)  # as another process would
    other.execute("BEGIN IMMEDIATE")
    try:
        commits = asyncio.gather(*(store.commit_version(version(f"k{i}")) for i in range(20)))
        turns, started = 0, time.monotonic()
        while time.monotonic() - started < 0.5:
            await asyncio.sleep(0.01)
            turns += 1
        assert turns >= 20 and not commits.done()
    finally:
        other.execute("COMMIT")
        other.close()
    assert len(await asyncio.wait_for(commits, 30)) == 20
    assert (await store.bucket_usage("b"))[0] == 20
    await store.close()


async def test_close_commits_the_writes_already_queued(tmp_path: Path) -> None:
    path = str(tmp_path / "m.db")
    store = await SQLiteStore.open(path, secret_key=KEY)
    await store.create_bucket(BucketRecord("b", "o", 1.0))
    tasks = [asyncio.create_task(store.commit_version(version(f"k{i}"))) for i in range(10)]
    await asyncio.sleep(0)  # queued for the loop's next commit, not yet committed
    await store.close()
    assert all(t.done() and t.exception() is None for t in tasks)
    again = await SQLiteStore.open(path, secret_key=KEY)
    try:
        assert (await again.bucket_usage("b"))[0] == 10
    finally:
        await again.close()
