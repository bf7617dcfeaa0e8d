"""Fixtures for the metadata tests: every test body runs against every backend.

Adding a backend is one more entry in BACKENDS: an async context manager that
yields an open, empty Store. PostgreSQL runs on a throw-away server started for the
session (tests/support/postgres.py), one database per test module and one fresh
schema per store.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
from support.postgres import drop_database, fresh_schema, make_database, postgres_server

from kurastore.metadata import BucketRecord, ObjectVersion, PartLayout, Store
from kurastore.metadata.postgres import PostgresStore
from kurastore.metadata.sqlite import SQLiteStore

SECRET_KEY = bytes(range(32))


@asynccontextmanager
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await SQLiteStore.open(str(tmp_path / "meta.db"), secret_key=SECRET_KEY)
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def postgres_store(tmp_path: Path, *, database_dsn: str) -> AsyncIterator[Store]:
    async with fresh_schema(database_dsn) as dsn:
        store = await PostgresStore.open(dsn, secret_key=SECRET_KEY, min_size=1, max_size=8)
        try:
            yield store
        finally:
            await store.close()


BACKENDS: dict[str, Callable[..., AbstractAsyncContextManager[Store]]] = {
    "sqlite": sqlite_store,
    "postgres": postgres_store,
}
__all__ = ["postgres_server"]  # the session fixture, imported so pytest registers it


@pytest.fixture(scope="module")
def postgres_database(postgres_server: str) -> Iterator[str]:
    dsn, name = make_database(postgres_server)
    try:
        yield dsn
    finally:
        drop_database(postgres_server, name)


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> Callable[[Path], AbstractAsyncContextManager[Store]]:
    if request.param == "postgres":
        dsn = request.getfixturevalue("postgres_database")
        return functools.partial(postgres_store, database_dsn=dsn)
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
