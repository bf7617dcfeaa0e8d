"""The shard files: atomic writes, no overwrite, cleanup, quota and real ENOSPC, pruning."""

from __future__ import annotations

import errno
import os
import threading
from pathlib import Path

import pytest

from kurastore.storage import InsufficientStorage, ShardExists, ShardId, ShardNotFound
from kurastore.storage import _disk as disk
from kurastore.storage._direct import DirectAppender
from kurastore.storage._disk import ShardStore


def sid(n: int = 1, tag: str = "p1", index: int = 0) -> ShardId:
    return ShardId(f"{n:032x}", tag, index)


@pytest.fixture
def store(tmp_path: Path) -> ShardStore:
    # Shard files, whatever their size: packed shards have test_pack.py.
    s = ShardStore(tmp_path / "data", pack_max_shard=0)
    s.open()
    return s


def put(store: ShardStore, partition: int, shard: ShardId, data: bytes) -> None:
    w = store.begin_write(partition, shard)
    try:
        w.write([data])
        w.commit()
    except BaseException:
        w.abort()
        raise


@pytest.mark.parametrize("whole", [False, True])
def test_layout_is_partition_then_shard_name(store: ShardStore, whole: bool) -> None:
    if whole:
        store.write_whole(12, sid(5, "p2", 3), b"abc")
    else:
        put(store, 12, sid(5, "p2", 3), b"abc")
    path = store.root / "shards" / "12" / f"{5:032x}.p2.3"
    assert path.read_bytes() == b"abc"
    assert os.listdir(store.root / "shards" / "12") == [path.name]  # no object directory
    assert os.listdir(store.tmp_dir) == []


def put_legacy(root: Path, partition: int, shard: ShardId, data: bytes) -> Path:
    """A shard file where the old layout kept it: shards/<partition>/<object_id>/<tag>.<i>."""
    obj_dir = root / "shards" / str(partition) / shard.object_id
    obj_dir.mkdir(parents=True, exist_ok=True)
    path = obj_dir / shard.file_name
    path.write_bytes(data)
    return path


def test_old_layout_shards_are_read_listed_and_deleted(tmp_path: Path) -> None:
    root = tmp_path / "data"
    old = [put_legacy(root, 4, sid(1, "p1", i), b"old%d" % i) for i in range(3)]
    put_legacy(root, 5, sid(2), b"gone")
    store = ShardStore(root)
    store.open()
    assert store.usage().shards == 4 and store.usage().used_bytes == 16
    store.write_whole(4, sid(3), b"new")  # the new layout, beside the old one
    assert store.list_partitions() == [4, 5]
    assert [i.shard for i in store.list_partition(4)] == [
        sid(1, "p1", 0), sid(1, "p1", 1), sid(1, "p1", 2), sid(3)]
    assert store.read(4, sid(1, "p1", 1)) == b"old1"
    assert store.read_range(4, sid(1, "p1", 2), 1, None, 100).data == b"ld2"
    assert store.read_range(4, sid(1, "p1", 2), None, None, 100).path == str(old[2])
    assert store.stat(4, sid(1, "p1", 0)).size == 4
    assert store.shard_file(4, sid(1, "p1", 0)) == old[0]
    assert store.shard_file(4, sid(3)) == root / "shards" / "4" / sid(3).name
    # Its name is taken: neither write path makes a second copy in the new layout.
    with pytest.raises(ShardExists):
        store.write_whole(4, sid(1, "p1", 0), b"again")
    with pytest.raises(ShardExists):
        store.begin_write(4, sid(1, "p1", 0))
    assert store.delete(4, sid(1, "p1", 0))
    assert store.delete_object(4, f"{1:032x}", "p1") == 2
    assert not old[0].parent.exists()  # the emptied object directory is pruned
    assert store.delete(5, sid(2))
    assert store.list_partitions() == [4]  # and the emptied partition's
    assert store.usage().shards == 1 and store.usage().used_bytes == 3


def test_delete_object_takes_only_that_object_and_tag(store: ShardStore) -> None:
    for tag in ("p1", "p2"):
        for i in range(3):
            store.write_whole(7, sid(1, tag, i), b"x")
    store.write_whole(7, sid(2, "p1", 0), b"y")
    put_legacy(store.root, 7, sid(1, "p1", 5), b"z")
    assert store.delete_object(7, f"{1:032x}", "p1") == 4  # the old layout's one too
    assert not (store.partition_dir(7) / f"{1:032x}").exists()
    assert [i.shard for i in store.list_partition(7)] == [
        sid(1, "p2", 0), sid(1, "p2", 1), sid(1, "p2", 2), sid(2, "p1", 0)]
    assert store.delete_object(7, f"{1:032x}") == 3
    assert [i.shard for i in store.list_partition(7)] == [sid(2, "p1", 0)]


def test_shard_invisible_until_commit(store: ShardStore) -> None:
    w = store.begin_write(1, sid())
    w.write([b"x" * 1000, memoryview(b"y" * 10)])
    with pytest.raises(ShardNotFound):
        store.stat(1, sid())
    assert store.list_partition(1) == []
    info = w.commit()
    assert info.size == 1010
    assert store.read(1, sid()) == b"x" * 1000 + b"y" * 10


def test_abort_leaves_nothing(store: ShardStore) -> None:
    w = store.begin_write(1, sid())
    w.write([b"x" * 4096])
    w.abort()
    w.abort()  # idempotent
    assert os.listdir(store.tmp_dir) == []
    assert store.list_partitions() == []
    assert store.usage().used_bytes == 0


def test_never_overwrites(store: ShardStore) -> None:
    put(store, 1, sid(), b"first")
    with pytest.raises(ShardExists):
        store.begin_write(1, sid())
    # Two writers that both started before either finished: exactly one wins.
    a, b = store.begin_write(1, sid(2)), store.begin_write(1, sid(2))
    a.write([b"from a"])
    b.write([b"from b"])
    a.commit()
    with pytest.raises(ShardExists):
        b.commit()
    b.abort()
    assert store.read(1, sid()) == b"first"
    assert store.read(1, sid(2)) == b"from a"
    assert os.listdir(store.tmp_dir) == []


def test_open_drops_interrupted_writes_and_counts_usage(tmp_path: Path) -> None:
    s = ShardStore(tmp_path / "d")
    s.open()
    put(s, 3, sid(1), b"a" * 100)
    put(s, 4, sid(2), b"b" * 50)
    w = s.begin_write(3, sid(3))  # a crash mid-write: never committed, never aborted
    w.write([b"c" * 77])
    assert len(os.listdir(s.tmp_dir)) == 1
    again = ShardStore(tmp_path / "d")
    again.open()
    assert os.listdir(again.tmp_dir) == []
    assert again.list_partitions() == [3, 4]
    usage = again.usage()
    assert (usage.used_bytes, usage.shards) == (150, 2)


def test_quota_full_refuses_and_cleans(tmp_path: Path) -> None:
    s = ShardStore(tmp_path / "d", capacity_bytes=10_000)
    s.open()
    put(s, 1, sid(1), b"a" * 6000)
    with pytest.raises(InsufficientStorage):
        put(s, 1, sid(2), b"b" * 6000)
    assert os.listdir(s.tmp_dir) == []
    assert s.read(1, sid(1)) == b"a" * 6000
    u = s.usage()
    assert (u.capacity_bytes, u.used_bytes, u.free_bytes, u.shards) == (10_000, 6000, 4000, 1)
    s.delete(1, sid(1))
    put(s, 1, sid(2), b"b" * 6000)  # room again after a delete


def test_real_enospc_from_the_kernel(store: ShardStore) -> None:
    # /dev/full fails every write with ENOSPC: the error the volume gives when it fills up.
    w = store.begin_write(1, sid())
    os.close(w._fd)  # type: ignore[arg-type]
    w._fd = os.open("/dev/full", os.O_WRONLY)
    w._out = DirectAppender(w._fd, False, store.staging)
    with pytest.raises(InsufficientStorage):
        w.write([b"x" * 65536])
    w.abort()
    assert os.listdir(store.tmp_dir) == []
    assert store.usage().used_bytes == 0


def test_delete_prunes_empty_directories(store: ShardStore) -> None:
    put(store, 9, sid(1, "p1", 0), b"a")
    put(store, 9, sid(1, "p1", 1), b"b")
    put(store, 9, sid(1, "p2", 0), b"c")
    assert store.delete(9, sid(1, "p1", 0)) is True
    assert store.delete(9, sid(1, "p1", 0)) is False
    assert store.delete_object(9, f"{1:032x}", "p1") == 1
    assert [i.shard for i in store.list_partition(9)] == [sid(1, "p2", 0)]
    assert store.delete_object(9, f"{1:032x}") == 1
    assert not (store.root / "shards" / "9").exists()
    assert store.list_partitions() == []
    assert store.usage().shards == 0


def test_stray_files_are_ignored(store: ShardStore) -> None:
    put(store, 2, sid(1), b"a")
    (store.root / "shards" / "not-a-partition").mkdir()
    (store.root / "shards" / "2" / f"{1:032x}").mkdir()
    (store.root / "shards" / "2" / f"{1:032x}" / "junk.txt").write_bytes(b"x")
    (store.root / "shards" / "2" / f"{1:032x}.junk").write_bytes(b"x")
    assert store.list_partitions() == [2]
    assert [i.shard for i in store.list_partition(2)] == [sid(1)]
    assert store.delete_object(2, f"{1:032x}") == 1
    assert (store.root / "shards" / "2" / f"{1:032x}" / "junk.txt").exists()
    assert (store.root / "shards" / "2" / f"{1:032x}.junk").exists()


@pytest.mark.parametrize("whole", [False, True], ids=["streamed", "whole"])
def test_concurrent_writes_and_deletes_in_one_object(store: ShardStore, whole: bool) -> None:
    """Deletes prune the object's directory while other writers place shards into it
    (for whole writes, while their unnamed O_TMPFILE file is in it): every write lands."""
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            for round_ in range(40):
                shard = sid(1, f"t{i}", round_ % 256)
                if whole:
                    store.write_whole(1, shard, b"z" * 100)
                else:
                    put(store, 1, shard, b"z" * 10)
                store.delete(1, shard)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert store.list_partitions() == []
    assert store.usage().used_bytes == 0


def test_read_range_resolves_http_ranges(store: ShardStore) -> None:
    put(store, 1, sid(1), b"0123456789")
    put(store, 1, sid(2), b"")

    def rr(shard: ShardId, start: int | None, stop: int | None, limit: int = 100) -> tuple:
        r = store.read_range(1, shard, start, stop, limit)
        return r.size, r.start, r.stop, r.data

    assert rr(sid(1), None, None) == (10, 0, 10, b"0123456789")
    assert rr(sid(1), 2, 5) == (10, 2, 5, b"234")
    assert rr(sid(1), 7, None) == (10, 7, 10, b"789")
    assert rr(sid(1), 7, 1000) == (10, 7, 10, b"789")  # clamped, as HTTP does
    assert rr(sid(1), -3, None) == (10, 7, 10, b"789")  # suffix range
    assert rr(sid(1), -30, None) == (10, 0, 10, b"0123456789")
    assert rr(sid(1), 10, None)[3] is None  # not satisfiable
    assert rr(sid(1), 0, None, limit=4) == (10, 0, 10, None)  # too large to inline
    assert rr(sid(2), None, None) == (0, 0, 0, b"")
    with pytest.raises(ShardNotFound):
        store.read_range(1, sid(3), None, None, 100)


@pytest.mark.parametrize("unnamed", [True, False], ids=["o_tmpfile", "named-tmp"])
def test_whole_writes_are_atomic_and_never_overwrite(store: ShardStore, unnamed: bool,
                                                     monkeypatch) -> None:
    """write_whole (the small-shard path) through an unnamed O_TMPFILE file linked into
    place, or through a named file in tmp/ where unnamed files do not work: the same
    guarantees either way."""
    if unnamed:
        assert store._unnamed_files, "O_TMPFILE works on the test machine's filesystem"
    store._unnamed_files = unnamed
    info = store.write_whole(3, sid(7, "0", 2), b"q" * 5000)
    assert (info.size, store.read(3, sid(7, "0", 2))) == (5000, b"q" * 5000)
    with pytest.raises(ShardExists):
        store.write_whole(3, sid(7, "0", 2), b"other")
    assert store.read(3, sid(7, "0", 2)) == b"q" * 5000
    # The disk filling up mid-write: InsufficientStorage, and the first write into a new
    # object leaves neither a file nor the directories it made.
    def full(fd: int, data: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(disk, "_write_all", full)
    with pytest.raises(InsufficientStorage):
        store.write_whole(4, sid(8, "0", 0), b"lost")
    assert store.list_partitions() == [3]
    assert os.listdir(store.tmp_dir) == []
    assert store.usage().shards == 1 and store.usage().used_bytes == 5000


def test_whole_write_lands_when_a_delete_prunes_its_directory_midway(
    store: ShardStore, monkeypatch
) -> None:
    """The partition's directory removed while the unnamed file is written, as a delete
    of the partition's last shard does: the write places the file by path, making the
    directory again, and it reads back."""
    assert store._unnamed_files
    real_write_all = disk._write_all
    part_dir = store.partition_dir(6)

    def write_then_prune(fd: int, data: bytes) -> None:
        real_write_all(fd, data)
        os.rmdir(part_dir)  # empty: the unnamed file has no name in it

    monkeypatch.setattr(disk, "_write_all", write_then_prune)
    info = store.write_whole(6, sid(5, "0", 1), b"w" * 3000)
    monkeypatch.setattr(disk, "_write_all", real_write_all)
    assert info.size == 3000
    assert store.read(6, sid(5, "0", 1)) == b"w" * 3000
    assert [i.shard for i in store.list_partition(6)] == [sid(5, "0", 1)]
    assert store.usage().shards == 1 and store.usage().used_bytes == 3000


@pytest.mark.parametrize("whole", [False, True])
def test_a_write_into_a_partition_another_writer_made_syncs_its_entry(
        store: ShardStore, whole: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """A partition directory another writer has just made may not have its entry in
    shards/ on disk yet: the first write that finds it (per process) fsyncs shards/
    before answering; later writes there, and the maker's own, pay nothing extra."""
    synced: list[str] = []
    real = disk._fsync_dir
    monkeypatch.setattr(disk, "_fsync_dir", lambda path: (synced.append(str(path)), real(path)))
    shards = str(store.shards_dir)

    def write(partition: int, n: int) -> None:
        if whole:
            store.write_whole(partition, sid(n), b"x" * 1000)
        else:
            put(store, partition, sid(n), b"x" * 1000)

    os.mkdir(store.partition_dir(7))  # made by a writer still on its way to the fsync
    write(7, 1)
    assert synced.count(shards) == 1
    write(7, 2)
    assert synced.count(shards) == 1  # known durable now
    write(8, 3)  # made here: the maker's own parent fsync, no second one
    assert synced.count(shards) == 2
    write(8, 4)
    assert synced.count(shards) == 2
