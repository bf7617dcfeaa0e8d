"""Packed shards (_pack.py): exact bytes, durability across restarts, torn and rotten
records, group commit, compaction. Real files on the test machine's filesystem."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from kurastore.erasure import frame_owner
from kurastore.storage import ShardExists, ShardId, ShardNotFound, _pack
from kurastore.storage._disk import ShardStore
from tests.unit.storage.test_scrub import shard_bytes


def sid(n: int, tag: str = "p1", index: int = 0) -> ShardId:
    return ShardId(f"{n:032x}", tag, index)


def opened(root: Path, **kwargs: int) -> ShardStore:
    store = ShardStore(root, **kwargs)
    store.open()
    return store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ShardStore]:
    s = opened(tmp_path / "pod")
    yield s
    s.close()


@pytest.fixture
def small_packs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_pack, "PACK_BYTES", 1 << 20)  # several packs from a few shards


@pytest.fixture
def syncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The fds of every durable write from now on: a pwritev with RWF_DSYNC, or an
    fdatasync where the kernel lacks it."""
    seen: list[int] = []
    real_sync, real_pwritev = os.fdatasync, os.pwritev

    def pwritev(fd: int, views: Any, offset: int, flags: int = 0) -> int:
        if flags & getattr(os, "RWF_DSYNC", 0):
            seen.append(fd)
        return real_pwritev(fd, views, offset, flags)

    monkeypatch.setattr(os, "fdatasync", lambda fd: (seen.append(fd), real_sync(fd)))
    monkeypatch.setattr(os, "pwritev", pwritev)
    return seen


def filled(root: Path, count: int, size: int, partitions: int
           ) -> tuple[ShardStore, dict[int, bytes]]:
    """A store at `root` holding shard n (of `count`) in partition n % `partitions`."""
    store = opened(root)
    bodies = {n: os.urandom(size) for n in range(count)}
    for n, body in bodies.items():
        store.write_whole(n % partitions, sid(n), body)
    return store, bodies


def read_all(store: ShardStore, partition: int, shard: ShardId) -> bytes:
    found = store.read_range(partition, shard, None, None, 1 << 30)
    assert found.data is not None
    return bytes(found.data)


def packs(root: Path) -> list[Path]:
    return sorted((root / "packs").glob("*.pack"))


SIZES = [0, 1, 4095, 4096, 65535, 65536, 262144 + 37, 1 << 20]


@pytest.mark.parametrize("size", SIZES)
def test_packed_shards_read_back_exactly_whatever_the_range(store: ShardStore,
                                                            size: int) -> None:
    data = os.urandom(size)
    info = store.write_whole(5, sid(size), data)
    assert (info.size, store.stat(5, sid(size)).size) == (size, size)
    assert not (store.root / "shards" / "5" / sid(size).name).exists()  # no file of its own
    assert read_all(store, 5, sid(size)) == data
    assert store.read(5, sid(size)) == data
    for start, stop in [(0, 1), (size // 3, size // 2), (-7, None), (size - 1, None),
                        (4090, 4100), (size // 2, None)]:
        found = store.read_range(5, sid(size), start, stop, 1 << 30, lend=True)
        try:
            want = data[start:stop] if start >= 0 or size else b""
            if not want:
                assert found.start >= found.stop
                continue
            assert found.data is not None and bytes(found.data) == want
        finally:
            found.release()
    assert [i.shard for i in store.list_partition(5)] == [sid(size)]
    assert store.list_partitions() == [5]
    assert store.usage().used_bytes == size and store.usage().shards == 1


def test_a_packed_shard_is_never_overwritten(store: ShardStore) -> None:
    store.write_whole(1, sid(1), b"first")
    with pytest.raises(ShardExists):
        store.write_whole(1, sid(1), b"second")
    with pytest.raises(ShardExists):
        store.begin_write(1, sid(1))  # nor by a streamed write into a file
    files = opened(store.root.parent / "files", pack_max_shard=0)
    try:
        files.write_whole(1, sid(2), b"a file")
    finally:
        files.close()
    assert read_all(store, 1, sid(1)) == b"first"


def test_a_file_of_the_same_name_refuses_a_packed_write(tmp_path: Path) -> None:
    files = opened(tmp_path / "pod", pack_max_shard=0)
    files.write_whole(1, sid(1), b"in a file")
    files.close()
    store = opened(tmp_path / "pod")
    try:
        with pytest.raises(ShardExists):
            store.write_whole(1, sid(1), b"in a pack")
        assert read_all(store, 1, sid(1)) == b"in a file"
        store.write_whole(1, sid(2), b"in a pack")
        assert [i.shard for i in store.list_partition(1)] == [sid(1), sid(2)]
        assert store.usage().shards == 2
    finally:
        store.close()


def test_writes_and_deletes_survive_a_restart(tmp_path: Path) -> None:
    root = tmp_path / "pod"
    store = opened(root)
    data = {n: os.urandom(1000 * n) for n in range(1, 40)}
    for n, body in data.items():
        store.write_whole(n % 3, sid(n), body)
    for n in range(1, 40, 4):
        assert store.delete(n % 3, sid(n))
        del data[n]
    assert store.delete_object(0, sid(6).object_id) == 1
    del data[6]
    assert not store.delete(1, sid(1))  # deleted already
    store.write_whole(1, sid(1), b"written again")  # after its deletion
    data[1] = b"written again"
    used = store.usage().used_bytes
    store.close()

    again = opened(root)
    try:
        for n, body in data.items():
            assert read_all(again, n % 3, sid(n)) == body
        listed = {i.shard for p in again.list_partitions() for i in again.list_partition(p)}
        assert listed == {sid(n) for n in data}
        assert (again.usage().used_bytes, again.usage().shards) == (used, len(data))
        with pytest.raises(ShardNotFound):
            again.stat(0, sid(9))
    finally:
        again.close()


def test_concurrent_writers_share_fdatasyncs(store: ShardStore, syncs: list[int]) -> None:
    """Group commit: fewer durable writes (a pwritev with RWF_DSYNC, or fdatasync where
    the kernel lacks it) than shards written."""
    bodies = {n: os.urandom(256 << 10) for n in range(64)}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: store.write_whole(n % 7, sid(n), bodies[n]), bodies))
    assert all(read_all(store, n % 7, sid(n)) == body for n, body in bodies.items())
    assert len(syncs) < len(bodies)  # group commit: fewer syncs than writes


def test_queued_writes_are_written_by_the_thread_that_commits_them(
        store: ShardStore, syncs: list[int]) -> None:
    """write_packed_async queues; commit_packed writes everything queued in one durable
    write and completes each write on the calling thread (the pod's event loop)."""
    bodies = {n: os.urandom(100_000 + n) for n in range(5)}
    done: dict[int, tuple[int, str]] = {}
    for n, body in bodies.items():
        store.write_packed_async(
            3, sid(n), body,
            lambda info, error, n=n: done.__setitem__(
                n, (info.size if info else -1, threading.current_thread().name)))
    assert done == {} and syncs == []  # nothing written before the commit
    store.commit_packed()
    here = threading.current_thread().name
    assert done == {n: (len(body), here) for n, body in bodies.items()}
    assert len(syncs) == 1
    assert all(read_all(store, 3, sid(n)) == body for n, body in bodies.items())


def test_a_torn_last_batch_is_dropped_and_later_writes_survive(tmp_path: Path) -> None:
    root = tmp_path / "pod"
    store = opened(root)
    kept, torn, after = os.urandom(300_000), os.urandom(300_000), os.urandom(300_000)
    store.write_whole(1, sid(1), kept)
    torn_place = store.write_whole(1, sid(2), torn) and store.packs.place(1, sid(2).name)
    store.close()
    assert torn_place is not None
    # A crash mid-write: the last record's payload only partly reached the disk.
    with open(packs(root)[-1], "r+b") as f:
        f.seek(torn_place.offset + 100_000)
        f.write(bytes(8192))

    again = opened(root)
    try:
        assert read_all(again, 1, sid(1)) == kept
        with pytest.raises(ShardNotFound):
            again.stat(1, sid(2))
        again.write_whole(1, sid(3), after)  # appended where the torn record was
    finally:
        again.close()
    third = opened(root)
    try:
        assert read_all(third, 1, sid(1)) == kept
        assert read_all(third, 1, sid(3)) == after
        assert [i.shard for i in third.list_partition(1)] == [sid(1), sid(3)]
    finally:
        third.close()


def test_a_rotten_header_loses_only_its_own_record(tmp_path: Path, small_packs: None) -> None:
    root = tmp_path / "pod"
    store, bodies = filled(root, 12, 200_000, 1)
    victim = store.packs.place(0, sid(1).name)
    store.close()
    assert victim is not None and len(packs(root)) > 2
    with open(root / "packs" / f"{victim.pack:016x}.pack", "r+b") as f:
        f.seek(victim.offset - 30)  # inside the record's header
        byte = f.read(1)
        f.seek(victim.offset - 30)
        f.write(bytes([byte[0] ^ 0x10]))
    for listed in (root / "packs").glob("*.idx"):  # no lists: every pack is scanned
        listed.unlink()
    again = opened(root)
    try:
        assert {i.shard for i in again.list_partition(0)} == {sid(n) for n in bodies} - {sid(1)}
        for n, body in bodies.items():
            if n != 1:
                assert read_all(again, 0, sid(n)) == body
    finally:
        again.close()


def test_a_record_forged_inside_a_payload_is_not_believed(tmp_path: Path) -> None:
    root = tmp_path / "pod"
    store = opened(root)
    # A user's bytes land in shards verbatim: this one carries a well-formed record
    # (built by another pack, so with another nonce) on a 4 KiB boundary.
    other = opened(tmp_path / "other")
    other.write_whole(9, sid(99), b"forged")
    forged_place = other.packs.place(9, sid(99).name)
    other.close()
    assert forged_place is not None
    forged_pack = packs(tmp_path / "other")[0].read_bytes()
    record = forged_pack[4096:8192]
    payload = bytes(4096 - 61) + record + bytes(4096)
    store.write_whole(1, sid(1), payload)
    place = store.packs.place(1, sid(1).name)
    store.close()
    assert place is not None
    with open(packs(root)[-1], "r+b") as f:  # the real header rots: the scan resyncs
        f.seek(place.offset - 20)
        f.write(b"\xff")
    again = opened(root)
    try:
        assert again.list_partitions() == []
    finally:
        again.close()


def test_compaction_keeps_live_shards_and_deletions(tmp_path: Path, small_packs: None) -> None:
    root = tmp_path / "pod"
    store, bodies = filled(root, 30, 150_000, 2)
    for n in range(30):
        if n % 5:
            assert store.delete(n % 2, sid(n))
            del bodies[n]
    store.write_whole(1, sid(3), b"written again after its deletion")
    bodies[3] = b"written again after its deletion"
    before = len(packs(root))
    # Reads running all through the compaction get every live shard's bytes, never a
    # closed or removed pack's.
    stop, wrong = threading.Event(), []

    def read_meanwhile() -> None:
        while not stop.is_set():
            wrong.extend(n for n, body in bodies.items()
                         if read_all(store, n % 2, sid(n)) != body)

    readers = [threading.Thread(target=read_meanwhile) for _ in range(2)]
    for reader in readers:
        reader.start()
    try:
        reclaimed = store.compact_packs()
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert reclaimed > 0 and len(packs(root)) < before
    assert wrong == []
    for n, body in bodies.items():
        assert read_all(store, n % 2, sid(n)) == body
    # The pack that was current meanwhile is sealed now, and may be worth a pass too; then
    # there is nothing left to gain.
    assert any(store.compact_packs() == 0 for _ in range(3))
    store.close()

    again = opened(root)
    try:
        listed = {i.shard for p in again.list_partitions() for i in again.list_partition(p)}
        assert listed == {sid(n) for n in bodies}  # no deleted shard came back
        for n, body in bodies.items():
            assert read_all(again, n % 2, sid(n)) == body
        assert again.usage().shards == len(bodies)
    finally:
        again.close()


def test_a_record_cut_short_on_disk_reads_as_missing_after_compaction(
    tmp_path: Path, small_packs: None
) -> None:
    root = tmp_path / "pod"
    store, bodies = filled(root, 20, 150_000, 1)
    first = packs(root)[0]
    held = {n for n in bodies if store.packs.place(0, sid(n).name).pack == 0}  # type: ignore[union-attr]
    for n in sorted(held)[:-1]:  # the pack is worth compacting: one live record left
        store.delete(0, sid(n))
        del bodies[n]
    (last,) = held & set(bodies)
    place = store.packs.place(0, sid(last).name)
    assert place is not None
    os.truncate(first, place.offset + place.size // 2)  # the disk lost its tail
    del bodies[last]

    assert store.compact_packs() > 0
    assert not first.exists()
    with pytest.raises(ShardNotFound):  # "missing", which the gateway heals; never a 500
        read_all(store, 0, sid(last))
    for n, body in bodies.items():
        assert read_all(store, 0, sid(n)) == body
    store.close()
    again = opened(root)
    try:
        assert {i.shard for i in again.list_partition(0)} == {sid(n) for n in bodies}
    finally:
        again.close()


def test_deletes_racing_a_compaction_stay_deleted(tmp_path: Path, small_packs: None) -> None:
    root = tmp_path / "pod"
    store = opened(root)
    names = list(range(40))
    for n in names:
        store.write_whole(0, sid(n), os.urandom(100_000))
    for n in names[::3]:
        store.delete(0, sid(n))
    gone = set(names[::3])
    stop = threading.Event()

    def delete_while_compacting() -> None:
        for n in names[1::3]:
            if stop.is_set():
                break
            store.delete(0, sid(n))
            gone.add(n)

    deleter = threading.Thread(target=delete_while_compacting)
    deleter.start()
    for _ in range(3):
        store.compact_packs()
    deleter.join()
    stop.set()
    store.close()
    again = opened(root)
    try:
        assert {i.shard for i in again.list_partition(0)} == {sid(n) for n in names
                                                              if n not in gone}
    finally:
        again.close()


def test_scrub_finds_a_flipped_byte_in_a_packed_shard(store: ShardStore) -> None:
    shard = sid(7, "p1", 1)
    owner = frame_owner(shard.object_id, shard.shard_tag)
    body = shard_bytes(100_000, index=1, owner=owner)
    store.write_whole(3, shard, body)
    assert store.verify(3, shard, owner).ok
    place = store.packs.place(3, shard.name)
    assert place is not None
    with open(packs(store.root)[-1], "r+b") as f:  # bitrot in the middle of the shard
        f.seek(place.offset + place.size // 2)
        byte = f.read(1)
        f.seek(place.offset + place.size // 2)
        f.write(bytes([byte[0] ^ 1]))
    result = store.verify(3, shard, owner)
    assert not result.ok and len(result.bad_stripes) == 1
    with pytest.raises(ShardNotFound):
        store.verify(3, sid(8), owner)


def test_sealed_packs_are_opened_from_their_lists(tmp_path: Path, small_packs: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "pod"
    store, bodies = filled(root, 14, 200_000, 3)
    for n in (2, 7):
        store.delete(n % 3, sid(n))
        del bodies[n]
    store.close()
    lists = sorted((root / "packs").glob("*.idx"))
    assert len(lists) == len(packs(root)) - 1  # every pack but the current one

    scanned: list[int] = []
    real = _pack._records

    def counting(pack: _pack._Pack, *, verify: bool) -> Iterator[tuple]:
        scanned.append(pack.number)
        return real(pack, verify=verify)

    monkeypatch.setattr(_pack, "_records", counting)

    def check() -> None:
        again = opened(root)
        try:
            listed = {i.shard for p in again.list_partitions() for i in again.list_partition(p)}
            assert listed == {sid(n) for n in bodies}
            for n, body in bodies.items():
                assert read_all(again, n % 3, sid(n)) == body
        finally:
            again.close()

    check()
    assert scanned == [len(lists)]  # only the last pack was read through
    damaged = bytearray(lists[0].read_bytes())
    damaged[-3] ^= 1
    lists[0].write_bytes(bytes(damaged))
    scanned.clear()
    check()
    assert sorted(scanned) == [0, len(lists)]  # a damaged list: its pack is scanned


def test_a_pack_removed_behind_the_pods_back_is_a_missing_shard(store: ShardStore) -> None:
    store.write_whole(2, sid(1), b"x" * 70_000)
    for path in packs(store.root):
        path.unlink()
    with pytest.raises(ShardNotFound):  # the gateway reads parity and queues a heal
        store.read_range(2, sid(1), None, None, 1 << 30)
