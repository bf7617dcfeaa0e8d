"""Topology refreshes on change notices, including one that arrives while a refresh
is already reading the store (the case that used to be lost until the next poll)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kurastore.gateway.objects.topology import Topology
from kurastore.metadata.sqlite import SQLiteStore
from kurastore.placement import PodSpec, build_map


def _pods(n: int) -> list[PodSpec]:
    return [PodSpec(f"pod{i}", f"z{i % 3}", f"n{i}") for i in range(n)]


async def test_a_notice_during_a_refresh_gets_its_own_refresh(tmp_path: Path) -> None:
    store = await SQLiteStore.open(str(tmp_path / "meta.db"), secret_key=bytes(range(32)))
    try:
        first = build_map(_pods(6), 6, partition_bits=4)
        await store.save_placement_map(first.epoch, first.to_json())
        # Polling alone would take an hour: only notices can make it current.
        topology = await Topology.load(store, max_age_s=3600.0)
        read_old, release = asyncio.Event(), asyncio.Event()
        real_latest = store.latest_placement_map

        async def slow_latest():  # reads the store now, answers only when released
            found = await real_latest()
            read_old.set()
            await release.wait()
            return found

        store.latest_placement_map = slow_latest  # type: ignore[method-assign]
        topology._changed("placement")  # a notice: a refresh starts and reads epoch 1
        await read_old.wait()
        store.latest_placement_map = real_latest  # type: ignore[method-assign]
        second = build_map(_pods(7), 6, partition_bits=4, previous=first)
        await store.save_placement_map(second.epoch, second.to_json())
        topology._changed("placement")  # the next notice, while that refresh runs
        release.set()
        assert topology._refreshing is not None
        await asyncio.wait_for(topology._refreshing, 5)
        assert topology.current.epoch == second.epoch
    finally:
        await store.close()
