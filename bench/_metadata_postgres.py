"""The PostgreSQL half of bench/metadata.py: the same figures on PostgresStore.

    python bench/metadata.py --backend postgres --dsn postgresql://... [--objects N]

Prints object commits per second with `--writers` concurrent writers through one
store, and through two stores (two pools: two gateways) with half the writers
each; then list pages of 1000 from a bucket of `--objects` keys, without and
with delimiter, as the SQLite run does. Every run gets a fresh schema in the
given database (dropped at the end). The objects are bulk-loaded with COPY
(PostgresStore.load_versions), which is not the commit path.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from kurastore.metadata import BucketRecord, ObjectVersion
from kurastore.metadata.postgres import PostgresStore

LOAD_BATCH = 100_000


async def _admin(dsn: str, sql: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


def _schema_dsn(dsn: str, schema: str) -> str:
    return dsn + ("&" if "?" in dsn else "?") + f"search_path={schema}"


async def _with_schema(dsn: str, fn: Callable[[str], Awaitable[Any]]) -> Any:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    await _admin(dsn, f"CREATE SCHEMA {schema}")
    try:
        return await fn(_schema_dsn(dsn, schema))
    finally:
        await _admin(dsn, f"DROP SCHEMA {schema} CASCADE")


async def _commits(
    dsn: str, writers: int, total: int, gateways: int, version: Callable[..., ObjectVersion]
) -> tuple[float, float]:
    stores = [await PostgresStore.open(dsn, secret_key=os.urandom(32),
                                       max_size=max(4, writers // gateways))
              for _ in range(gateways)]
    await stores[0].create_bucket(BucketRecord("c", "owner", time.time()))
    per_writer = total // writers

    async def writer(w: int) -> None:
        store = stores[w % gateways]
        for j in range(per_writer):
            await store.commit_version(version("c", f"w{w:02d}/obj{j:07d}", w * per_writer + j))

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    for s in stores:
        await s.close()
    return per_writer * writers / elapsed, cpu / (per_writer * writers) * 1e6


async def run(
    args: Any, version: Callable[..., ObjectVersion], layout: Callable[[int], list[str]],
    summary: Callable[[tuple[list[float], list[float]]], str], pages: int,
) -> None:
    settings = await _admin(args.dsn, "SELECT name, setting FROM pg_settings WHERE name IN "
                            "('fsync', 'synchronous_commit', 'shared_buffers', "
                            "'server_version')")
    print("postgresql: " + ", ".join(f"{r[0]}={r[1]}" for r in settings))
    for gateways in (1, 2):
        rate, cpu_us = await _with_schema(
            args.dsn, lambda d, g=gateways: _commits(d, args.writers, args.commits, g, version)
        )
        print(f"commit_version, {args.writers} writers over {gateways} store(s) (pools): "
              f"{rate:8,.0f}/s (client CPU {cpu_us:.0f} us/commit)")

    async def listing(dsn: str) -> None:
        store = await PostgresStore.open(dsn, secret_key=os.urandom(32))
        await store.create_bucket(BucketRecord("big", "owner", time.time()))
        keys = layout(args.objects)
        start = time.perf_counter()
        for lo in range(0, len(keys), LOAD_BATCH):
            await store.load_versions(
                [version("big", k, lo + j) for j, k in enumerate(keys[lo: lo + LOAD_BATCH])]
            )
        took = time.perf_counter() - start
        print(f"bulk load (COPY, {LOAD_BATCH:,}/txn): {args.objects:,} in {took:.1f} s")
        await _admin(dsn, "VACUUM ANALYZE")
        rng = random.Random(7)
        dirs = args.objects // 100
        flat = [f"dir{rng.randrange(max(dirs - 20, 1)):04d}/sub005/" for _ in range(pages)]
        delim = [f"dir{rng.randrange(max(dirs - 1001, 1)):04d}/" for _ in range(pages)]

        async def times(starts: list[str], delimiter: str) -> tuple[list[float], list[float]]:
            wall, cpu = [], []
            for s in starts:
                t0, c0 = time.perf_counter(), time.process_time()
                page = await store.list_objects("big", delimiter=delimiter, start_after=s)
                wall.append((time.perf_counter() - t0) * 1000)
                cpu.append((time.process_time() - c0) * 1000)
                n = len(page.entries) + len(page.common_prefixes)
                assert n == 1000 or not page.is_truncated, (s, n)
            return wall, cpu

        await times(flat[:3], "")
        await times(delim[:3], "/")
        print(f"list page of 1000, no delimiter : {summary(await times(flat, ''))}")
        print("list page of 1000, delimiter '/' (1000 common prefixes, 100 keys each): "
              f"{summary(await times(delim, '/'))}")
        t0 = time.perf_counter()
        usage = await store.bucket_usage("big")
        print(f"bucket_usage over {usage[0]:,} objects: "
              f"{(time.perf_counter() - t0) * 1000:.0f} ms")
        size = await _admin(dsn, "SELECT pg_size_pretty(sum(pg_total_relation_size(c.oid))) "
                                 "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                                 "WHERE n.nspname = current_schema() AND c.relkind = 'r'")
        print(f"database size for {args.objects:,} objects: {size[0][0]}")
        await store.close()

    await _with_schema(args.dsn, listing)
