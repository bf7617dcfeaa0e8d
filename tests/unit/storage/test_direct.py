"""Shard files written through O_DIRECT hold exactly the bytes given, whatever the sizes
and chunking."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from kurastore.storage import ShardId, ShardNotFound
from kurastore.storage._direct import (
    ALIGN,
    DirectAppender,
    StagingPool,
    is_cached,
    open_for_append,
)
from kurastore.storage._disk import DIRECT_MIN_BYTES, ShardStore

FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL


def _append(path: Path, chunks: list[bytes], pool: StagingPool) -> bool:
    fd, direct = open_for_append(path, FLAGS, 0o600)
    try:
        out = DirectAppender(fd, direct, pool)
        written = out.write(chunks)
        written += out.finish()
        assert written == sum(len(c) for c in chunks)
        os.fsync(fd)
    finally:
        os.close(fd)
    return direct


@pytest.mark.parametrize("size", [0, 1, ALIGN - 1, 64 << 10, (64 << 10) * 2,
                                  (64 << 10) * 3 + 17, (64 << 10) * 5 + ALIGN])
def test_file_holds_exactly_the_bytes(tmp_path: Path, size: int) -> None:
    rng = random.Random(size)
    data = rng.randbytes(size)
    cuts = sorted(rng.sample(range(size + 1), min(size, 9)))
    chunks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, size], strict=True)]
    pool = StagingPool(64 << 10)
    direct = _append(tmp_path / "f", chunks, pool)
    assert direct, "the test directory's filesystem takes O_DIRECT (ext4 here)"
    assert (tmp_path / "f").read_bytes() == data


def test_staging_buffers_are_reused(tmp_path: Path) -> None:
    pool = StagingPool(64 << 10, keep=2)
    first = pool.take()
    pool.give(first)
    _append(tmp_path / "a", [os.urandom(200_000)], pool)
    assert pool.take() is first


def test_large_shard_through_the_store_reads_back(tmp_path: Path) -> None:
    store = ShardStore(tmp_path / "pod")
    store.open()
    try:
        data = os.urandom(5 * (2 << 20) + 12345)  # staged buffers plus an unaligned tail
        shard = ShardId(f"{7:032x}", "0", 3)
        w = store.begin_write(4, shard)
        for off in range(0, len(data), 1 << 20):
            w.write([data[off : off + (1 << 20)]])
        info = w.commit()
        assert info.size == len(data)
        assert store.shard_file(4, shard).read_bytes() == data
        assert store.usage().used_bytes == len(data)
    finally:
        store.close()


def test_small_shards_skip_direct_io_and_large_ones_use_it(tmp_path: Path) -> None:
    store = ShardStore(tmp_path / "pod")
    store.open()
    try:
        small = store.begin_write(1, ShardId(f"{1:032x}", "0", 0), expected_size=4096)
        large = store.begin_write(1, ShardId(f"{2:032x}", "0", 0), expected_size=8 << 20)
        unknown = store.begin_write(1, ShardId(f"{3:032x}", "0", 0))
        # a 5 MiB part's shard at 4+2: less than one staging buffer, still written directly
        medium = store.begin_write(1, ShardId(f"{4:032x}", "0", 0), expected_size=5 << 18)
        assert small._out._direct is False
        assert large._out._direct is True and unknown._out._direct is True
        assert medium._out._direct is True
        for w, size in ((small, 4096), (large, 8 << 20), (unknown, 3 << 20),
                        (medium, (5 << 18) + 300)):
            data = os.urandom(size)
            w.write([data[:size // 3], data[size // 3:]])
            info = w.commit()
            if w is medium:
                assert not _cached(store.shard_file(1, info.shard), 1 << 20)
            assert store.shard_file(1, info.shard).read_bytes() == data
    finally:
        store.close()


def test_a_device_refusing_the_alignment_falls_back_in_order(tmp_path: Path) -> None:
    # A staging size no device accepts for O_DIRECT (not a multiple of 512): the first
    # flush gets EINVAL, and every byte still lands once, in order, through the page cache.
    pool = StagingPool(8192)
    pool.size = 8192 + 100
    data = os.urandom(50_000)
    chunks = [data[i : i + 7000] for i in range(0, len(data), 7000)]
    fd, direct = open_for_append(tmp_path / "odd", FLAGS, 0o600)
    assert direct
    try:
        out = DirectAppender(fd, direct, pool)
        written = out.write(chunks[:3]) + out.write(chunks[3:]) + out.finish()
        assert written == len(data)
        assert out._direct is False
    finally:
        os.close(fd)
    assert (tmp_path / "odd").read_bytes() == data


def _cached(path: Path, length: int) -> bool:
    """Are the first `length` bytes of `path` all in the page cache? (cachestat(2): asking
    reads nothing in.)"""
    fd = os.open(path, os.O_RDONLY)
    try:
        cached = is_cached(fd, 0, length)
    finally:
        os.close(fd)
    assert cached is not None, "this kernel (6.5+) has cachestat"
    return cached


@pytest.mark.parametrize("size", [DIRECT_MIN_BYTES - 1, DIRECT_MIN_BYTES,
                                  (256 << 10) + 37, (2 << 20) - 1])
def test_whole_shards_read_back_exactly_whatever_the_range(tmp_path: Path, size: int) -> None:
    store = ShardStore(tmp_path / "pod", pack_max_shard=0)  # files
    store.open()
    try:
        data = random.Random(size).randbytes(size)
        shard = ShardId(f"{size:032x}", "0", 1)
        assert store.write_whole(9, shard, data).size == size
        assert store.shard_file(9, shard).read_bytes() == data
        for start, stop in ((None, None), (0, size), (1, size - 1), (ALIGN + 3, None),
                            (-5000, None), (size - 70_000, size - 3)):
            found = store.read_range(9, shard, start, stop, 4 << 20)
            assert found.data == data[found.start:found.stop]
            assert len(found.data) == found.stop - found.start > 0
    finally:
        store.close()


def test_whole_shards_go_around_the_page_cache_until_read_twice(tmp_path: Path) -> None:
    """A 256 KiB shard (one of a 1 MiB object at 4+2) is written and first read directly;
    read a second time, it is read into the page cache, where later reads find it."""
    store = ShardStore(tmp_path / "pod", pack_max_shard=0)  # files
    store.open()
    try:
        data = os.urandom(256 << 10)
        shard = ShardId(f"{5:032x}", "0", 0)
        store.write_whole(3, shard, data)
        path = store.shard_file(3, shard)
        assert not _cached(path, 64 << 10)
        assert store.read_range(3, shard, None, None, 1 << 20).data == data
        assert not _cached(path, 64 << 10), "a shard read once stays out of the cache"
        assert store.read_range(3, shard, None, None, 1 << 20).data == data
        assert _cached(path, len(data))
        assert store.read_range(3, shard, 100, 200_000, 1 << 20).data == data[100:200_000]
    finally:
        store.close()


def test_a_direct_read_lends_its_staging_buffer_until_released(tmp_path: Path) -> None:
    """The lane sends a shard read directly from the staging buffer it was read into (no
    copy) and gives the buffer back after the send."""
    store = ShardStore(tmp_path / "pod")
    store.open()
    try:
        data = os.urandom((256 << 10) + 40)
        shard = ShardId(f"{6:032x}", "0", 2)
        store.write_whole(2, shard, data)
        found = store.read_range(2, shard, 7, None, 1 << 20, lend=True)
        assert isinstance(found.data, memoryview) and found.lent is not None
        assert found.data == data[7:]
        stage = found.lent._stage
        found.release()
        found.release()  # twice is harmless
        assert store.staging.take() is stage
        copied = store.read_range(2, shard, 7, None, 1 << 20)  # not lent: bytes of its own
        assert isinstance(copied.data, bytes) and copied.data == data[7:]
    finally:
        store.close()


def test_a_large_range_is_sent_around_the_page_cache_once_and_through_it_after(
        tmp_path: Path) -> None:
    """A 16 MiB shard (of a 64 MiB object): its first large read is sent from staging
    buffers read directly, any range, exact bytes; a second one is left to sendfile."""
    store = ShardStore(tmp_path / "pod")
    store.open()
    try:
        data = os.urandom((16 << 20) + 123)
        shard = ShardId(f"{8:032x}", "0", 1)
        w = store.begin_write(5, shard, expected_size=len(data))
        w.write([data])
        w.commit()
        path = str(store.shard_file(5, shard))
        for start, count in ((0, len(data)), (ALIGN + 7, (5 << 20) + 1)):
            store._read_once.clear()
            got = bytearray()
            with open(path, "rb") as f:
                assert store.send_range(f, path, start, count, got.extend)
            assert got == data[start:start + count]
            assert not _cached(Path(path), 1 << 20)
        with open(path, "rb") as f:  # read lately: the page cache may have it now
            assert not store.send_range(f, path, 0, len(data), lambda v: None)
        with open(path, "rb") as f:
            os.truncate(path, 1 << 20)  # shrank under the reader
            store._read_once.clear()
            with pytest.raises(ShardNotFound):
                store.send_range(f, path, 0, len(data), lambda v: None)
    finally:
        store.close()
