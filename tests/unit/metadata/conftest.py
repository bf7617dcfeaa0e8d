"""Fixtures for the metadata tests: every test body runs against every backend.

Adding a backend (PostgreSQL) is one more entry in BACKENDS: an async context
manager that yields an open, empty Store.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from kurastore.metadata import BucketRecord, ObjectVersion, PartLayout, Store
from kurastore.metadata.sqlite import SQLiteStore

SECRET_KEY = bytes(range(32))


@asynccontextmanager
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await SQLiteStore.open(str(tmp_path / "meta.db"), secret_key=SECRET_KEY)
    try:
        yield store
    finally:
        await store.close()


BACKENDS: dict[str, Callable[[Path], AbstractAsyncContextManager[Store]]] = {
    "sqlite": sqlite_store,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Callable[[Path], AbstractAsyncContextManager[Store]]:
    return BACKENDS[request.param]


@pytest.fixture
async def store(backend, tmp_path: Path) -> AsyncIterator[Store]:
    async with backend(tmp_path) as s:
        yield s


@pytest.fixture
async def bucket(store: Store) -> str:
    await store.create_bucket(BucketRecord("photos", "alice", time.time()))
    return "photos"


def make_version(
    bucket: str, key: str, *, size: int = 100, etag: str = "", parts: int = 1, k: int = 4,
    m: int = 2, inline: bytes | None = None, partition: int = 7, epoch: int = 1,
) -> ObjectVersion:
    """A version as the gateway would commit it: fresh object id, one shard tag per part."""
    oid = os.urandom(16).hex()
    layout = () if inline is not None else tuple(
        PartLayout(n, f"p{n}", size // parts, etag or "0" * 32) for n in range(1, parts + 1)
    )
    return ObjectVersion(
        bucket=bucket, key=key, version_id="", object_id=oid, size=size,
        etag=etag or os.urandom(16).hex(), last_modified=time.time(), k=k, m=m,
        block_size=1 << 20, partition=partition, epoch=epoch, parts=layout, inline=inline,
    )


@pytest.fixture
def obj() -> Callable[..., ObjectVersion]:
    return make_version
