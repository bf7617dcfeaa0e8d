"""New placement epochs between gateways on one PostgreSQL: a map published through
one gateway's store reaches another gateway's topology by LISTEN/NOTIFY well within
a second (polling every 5 s stays as the fallback), and a write placed under an
epoch the cluster has since retired is refused at commit."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from support.postgres import drop_database, fresh_schema, make_database, postgres_server

from kurastore.gateway.objects.topology import Topology
from kurastore.metadata import BucketRecord, EpochRetired, ObjectVersion, PartLayout, PendingWrite
from kurastore.metadata.postgres import PostgresStore
from kurastore.placement import PodSpec, build_map

pytestmark = pytest.mark.integration
__all__ = ["postgres_server"]  # the session fixture, imported so pytest registers it

KEY = bytes(range(32))
NOTICE_BOUND_S = 1.0


@pytest.fixture(scope="module")
def database(postgres_server: str) -> Iterator[str]:
    dsn, name = make_database(postgres_server)
    try:
        yield dsn
    finally:
        drop_database(postgres_server, name)


@pytest.fixture
async def dsn(database: str) -> AsyncIterator[str]:
    async with fresh_schema(database) as schema_dsn:
        yield schema_dsn


def pods(n: int) -> list[PodSpec]:
    return [PodSpec(f"pod{i}", f"z{i % 3}", f"n{i}") for i in range(n)]


async def test_a_new_epoch_reaches_the_other_gateway_within_a_second(dsn: str) -> None:
    one = await PostgresStore.open(dsn, secret_key=KEY, min_size=1)
    two = await PostgresStore.open(dsn, secret_key=KEY, min_size=1)
    try:
        first = build_map(pods(6), 6, partition_bits=4)
        await one.save_placement_map(first.epoch, first.to_json())
        # Polling alone would take up to max_age_s (an hour here): only notices count.
        topology = await Topology.load(two, max_age_s=3600.0)
        assert topology.current.epoch == first.epoch
        delays = []
        previous = first
        for n in range(7, 12):
            new = build_map(pods(n), 6, partition_bits=4, previous=previous)
            published = time.monotonic()
            await one.save_placement_map(new.epoch, new.to_json())
            while topology.current.epoch != new.epoch:
                assert time.monotonic() - published < NOTICE_BOUND_S, "epoch not seen in time"
                await asyncio.sleep(0.005)
            delays.append(time.monotonic() - published)
            previous = new
        assert max(delays) < NOTICE_BOUND_S
    finally:
        await one.close()
        await two.close()


async def test_a_write_under_a_retired_epoch_fails_at_commit(dsn: str) -> None:
    gateway = await PostgresStore.open(dsn, secret_key=KEY, min_size=1)
    rebalancer = await PostgresStore.open(dsn, secret_key=KEY, min_size=1)
    try:
        await gateway.create_bucket(BucketRecord("b", "o", 1.0))
        first = build_map(pods(6), 6, partition_bits=4)
        second = build_map(pods(7), 6, partition_bits=4, previous=first)
        await gateway.save_placement_map(first.epoch, first.to_json())
        # A gateway still on the first map writes (no pending write: commit only)...
        object_id = os.urandom(16).hex()
        stale = ObjectVersion("b", "k", "", object_id, 10, "e", time.time(), k=4, m=2,
                              block_size=1 << 20, partition=first.partition_of(object_id),
                              epoch=first.epoch, parts=(PartLayout(1, "0", 10, "e"),))
        # ...while the map moves on and the first epoch, pinned by nothing, is retired.
        await rebalancer.save_placement_map(second.epoch, second.to_json())
        assert await rebalancer.retire_epochs(second.epoch) == [first.epoch]
        with pytest.raises(EpochRetired):
            await gateway.commit_version(stale)
        with pytest.raises(EpochRetired):
            await gateway.begin_write(PendingWrite(object_id, "0", "b", "k", stale.partition,
                                                   first.epoch, 6, time.time()))
        assert await gateway.bucket_usage("b") == (0, 0)
        fresh = ObjectVersion("b", "k", "", object_id, 10, "e", time.time(), k=4, m=2,
                              block_size=1 << 20, partition=second.partition_of(object_id),
                              epoch=second.epoch, parts=(PartLayout(1, "0", 10, "e"),))
        assert (await gateway.commit_version(fresh)).version.epoch == second.epoch
    finally:
        await gateway.close()
        await rebalancer.close()
