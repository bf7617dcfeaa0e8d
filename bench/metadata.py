"""Metadata store figures on this machine (SQLite backend).

    python bench/metadata.py [--objects N] [--writers 32] [--commits 20000] [--dir DIR]
    python bench/metadata.py --backend postgres [--dsn postgresql://...] [--writers 64]

With --backend postgres the figures come from PostgresStore: small PUTs from two
gateway processes and listing a 10,000,000-object bucket (see
bench/_metadata_postgres.py, which starts its own durable server unless --dsn).

Prints:
- object commits per second with `--writers` concurrent writers through the public
  API (commit_version of new keys, each with its pending write cleared), with
  synchronous=NORMAL and FULL (target: >= 5,000/s);
- a ListObjectsV2-style page of 1000 from a bucket of `--objects` keys named
  dir%04d/sub%03d/file%06d, with and without delimiter '/', median and p90 over
  25 pages started at spread-out points (target: median < 30 ms);
- RSS of this process and the database size with those objects loaded.
Next to each wall-clock figure it prints the CPU time the process used (all its
threads): on a shared machine the load average (printed) slows the wall clock,
and the CPU figure shows what the work itself costs.
The million keys are bulk-loaded with SQLiteStore.load_versions (executemany in one
transaction per 50,000 rows), which is not the commit path: the commit figure is
measured separately, through commit_version.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time

from kurastore.metadata import BucketRecord, ObjectVersion, PartLayout, PendingWrite
from kurastore.metadata.sqlite import SQLiteStore

LOAD_BATCH = 50_000
BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
PAGES = 25


def version(bucket: str, key: str, i: int) -> ObjectVersion:
    oid = f"{i:032x}"
    return ObjectVersion(
        bucket=bucket, key=key, version_id="", object_id=oid, size=4096 + i % 1000,
        etag=f"{i * 7919 % (1 << 64):032x}", last_modified=1_700_000_000.0 + i,
        content_type="application/octet-stream", k=4, m=2, block_size=1 << 20,
        partition=i % 4096, epoch=1, parts=(PartLayout(1, "p1", 4096 + i % 1000, "e" * 32),),
    )


async def commits_per_second(
    path: str, writers: int, total: int, synchronous: str
) -> tuple[float, float]:
    store = await SQLiteStore.open(path, secret_key=os.urandom(32), synchronous=synchronous)
    await store.create_bucket(BucketRecord("c", "owner", time.time()))
    per_writer = total // writers

    async def writer(w: int) -> None:
        for j in range(per_writer):
            i = w * per_writer + j
            v = version("c", f"w{w:02d}/obj{j:07d}", i)
            await store.commit_version(v)

    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    await store.close()
    return per_writer * writers / elapsed, cpu / (per_writer * writers) * 1e6


async def pending_commits_per_second(path: str, writers: int, total: int) -> float:
    """The store calls of a small sharded PUT: get_bucket (S3 front end), get_bucket
    (write precheck), begin_write, commit_version."""
    store = await SQLiteStore.open(path, secret_key=os.urandom(32))
    await store.create_bucket(BucketRecord("c", "owner", time.time()))
    per_writer = total // writers

    async def writer(w: int) -> None:
        for j in range(per_writer):
            i = w * per_writer + j
            v = version("c", f"w{w:02d}/obj{j:07d}", i)
            await store.get_bucket("c")
            await store.get_bucket("c")
            await store.begin_write(
                PendingWrite(v.object_id, "p1", "c", v.key, v.partition, 1, 6, time.time())
            )
            await store.commit_version(v)

    start = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    elapsed = time.perf_counter() - start
    await store.close()
    return per_writer * writers / elapsed


def raw_sqlite_commits(path: str, n: int = 5000) -> float:
    """The machine's limit without group commit: one tiny INSERT per transaction,
    WAL and synchronous=NORMAL, one thread, plain sqlite3."""
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("CREATE TABLE t (k BLOB PRIMARY KEY, v TEXT)")
    start = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (?, ?)", (f"key{i:08d}".encode(), "v" * 100))
        conn.execute("COMMIT")
    rate = n / (time.perf_counter() - start)
    conn.close()
    return rate


def layout(objects: int) -> list[str]:
    """dir%04d/sub%03d/file%06d with 10 subs of 10 files per dir."""
    return [f"dir{i // 100:04d}/sub{i // 10 % 10:03d}/file{i:06d}" for i in range(objects)]


async def load(store: SQLiteStore, keys: list[str]) -> float:
    start = time.perf_counter()
    for lo in range(0, len(keys), LOAD_BATCH):
        batch = [version("big", k, lo + j) for j, k in enumerate(keys[lo : lo + LOAD_BATCH])]
        await store.load_versions(batch)
    return time.perf_counter() - start


async def page_times(
    store: SQLiteStore, starts: list[str], delimiter: str
) -> tuple[list[float], list[float]]:
    times, cpus = [], []
    for start_after in starts:
        t0, c0 = time.perf_counter(), time.process_time()
        page = await store.list_objects("big", delimiter=delimiter, start_after=start_after)
        times.append((time.perf_counter() - t0) * 1000)
        cpus.append((time.process_time() - c0) * 1000)
        n = len(page.entries) + len(page.common_prefixes)
        # Full pages at the default size; a small --objects run may have fewer dirs.
        assert n == 1000 or not page.is_truncated, (start_after, n)
    return times, cpus


def rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def db_mib(path: str) -> float:
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p)) / 2**20


def summary(times: tuple[list[float], list[float]]) -> str:
    wall, cpu = times
    q = statistics.quantiles(wall, n=10)
    return (f"median {statistics.median(wall):6.2f} ms  p90 {q[-1]:6.2f} ms  "
            f"(CPU median {statistics.median(cpu):5.2f} ms, n={len(wall)})")


def load_average() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=1_000_000)
    ap.add_argument("--writers", type=int, default=32)
    ap.add_argument("--commits", type=int, default=20_000)
    ap.add_argument("--dir", default=None, help="where to put the databases (default: tmp)")
    ap.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    ap.add_argument("--dsn", default=None, help="PostgreSQL server (default: the bench's own)")
    ap.add_argument("--pages", type=int, default=200, help="list pages per case (postgres)")
    ap.add_argument("--pool", type=int, default=16,
                    help="connections per gateway process (postgres; the gateway's default)")
    args = ap.parse_args()
    if args.backend == "postgres":
        # Run as a script: PYTHONSAFEPATH keeps bench/ off sys.path.
        sys.path.insert(0, BENCH_DIR)
        import _metadata_postgres

        print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, {load_average()}")
        await _metadata_postgres.run(args)
        if args.commits:
            work = tempfile.mkdtemp(prefix="kurastore-bench-", dir=args.dir)
            rate = await pending_commits_per_second(f"{work}/pending.db", args.writers,
                                                    args.commits)
            shutil.rmtree(work, ignore_errors=True)
            print(f"next to SQLite (one gateway process, {args.writers} writers, the same "
                  f"calls): {rate:8,.0f} small PUTs/s")
        print(load_average())
        return
    work = tempfile.mkdtemp(prefix="kurastore-bench-", dir=args.dir)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus, databases in {work}, "
          f"{load_average()}")

    print(f"machine limit: raw sqlite3 one-row transactions, one thread, WAL NORMAL: "
          f"{raw_sqlite_commits(f'{work}/raw.db'):8,.0f}/s")
    for sync in ("NORMAL", "FULL"):
        rate, cpu_us = await commits_per_second(
            f"{work}/commits-{sync}.db", args.writers, args.commits, sync
        )
        print(f"commit_version, {args.writers} writers, synchronous={sync:6}: {rate:8,.0f}/s "
              f"(CPU {cpu_us:.0f} us/commit = {1e6 / cpu_us:,.0f} commits per CPU-second)")
    rate = await pending_commits_per_second(f"{work}/pending.db", args.writers, args.commits)
    print(f"small PUTs (get_bucket x2, begin_write, commit_version), {args.writers} writers, "
          f"NORMAL: {rate:8,.0f} PUTs/s")

    path = f"{work}/big.db"
    store = await SQLiteStore.open(path, secret_key=os.urandom(32))
    await store.create_bucket(BucketRecord("big", "owner", time.time()))
    keys = layout(args.objects)
    rss_before = rss_mib()
    took = await load(store, keys)
    print(f"bulk load (load_versions, executemany, {LOAD_BATCH:,}/txn): {args.objects:,} in "
          f"{took:.1f} s")
    del keys
    rng = random.Random(7)
    flat_starts = [f"dir{rng.randrange(args.objects // 100 - 20):04d}/sub005/"
                   for _ in range(PAGES)]
    dirs = args.objects // 100
    delim_starts = [f"dir{rng.randrange(max(dirs - 1001, 1)):04d}/" for _ in range(PAGES)]
    await page_times(store, flat_starts[:3], "")  # warm the caches once
    flat = await page_times(store, flat_starts, "")
    delim = await page_times(store, delim_starts, "/")
    print(f"list page of 1000, no delimiter : {summary(flat)}")
    print(f"list page of 1000, delimiter '/' (1000 common prefixes, 100 keys each): "
          f"{summary(delim)}")
    usage = await store.bucket_usage("big")
    print(f"bucket_usage over {usage[0]:,} objects: ", end="")
    t0 = time.perf_counter()
    await store.bucket_usage("big")
    print(f"{(time.perf_counter() - t0) * 1000:.0f} ms")
    print(f"RSS {rss_mib():.0f} MiB (before load {rss_before:.0f} MiB), "
          f"database {db_mib(path):.0f} MiB for {args.objects:,} objects")
    print(load_average())
    await store.close()


if __name__ == "__main__":
    asyncio.run(main())
