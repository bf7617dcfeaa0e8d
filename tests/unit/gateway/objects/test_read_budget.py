"""The gateway-wide read budget: what all GETs together may hold in fetched stripes."""

from __future__ import annotations

import asyncio
import hashlib
import os

import pytest

from kurastore.gateway.objects.budget import ReadBudget

MiB = 1 << 20


async def test_takes_up_to_the_limit_and_waiters_go_in_arrival_order() -> None:
    budget = ReadBudget(10)
    assert budget.try_take(6) == 6
    assert budget.try_take(5) == 0  # would pass the limit
    order: list[str] = []

    async def wait_for(name: str, nbytes: int) -> int:
        taken = await budget.take(nbytes)
        order.append(name)
        return taken

    big = asyncio.create_task(wait_for("big", 8))
    small = asyncio.create_task(wait_for("small", 1))
    await asyncio.sleep(0)
    # The small one would fit, but the big one came first: no overtaking.
    assert order == [] and budget.held == 6
    assert budget.try_take(1) == 0  # nor by try_take while someone waits
    budget.give(6)
    assert await big == 8 and await small == 1
    assert order == ["big", "small"] and budget.held == 9


async def test_a_charge_larger_than_the_budget_is_cut_to_it() -> None:
    budget = ReadBudget(4)
    assert await budget.take(100) == 4
    assert budget.held == 4
    budget.give(4)
    assert budget.held == 0


async def test_a_cancelled_waiter_leaves_no_charge_and_lets_others_in() -> None:
    budget = ReadBudget(10)
    assert budget.try_take(10) == 10
    first = asyncio.create_task(budget.take(10))
    second = asyncio.create_task(budget.take(3))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    budget.give(10)
    assert await second == 3
    assert budget.held == 3


async def test_a_waiter_cancelled_once_granted_hands_its_grant_on() -> None:
    budget = ReadBudget(10)
    assert budget.try_take(10) == 10
    waiter = asyncio.create_task(budget.take(10))
    await asyncio.sleep(0)
    budget.give(10)  # granted: held again, the waiter not yet resumed
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.held == 0


async def test_concurrent_gets_stay_within_the_budget_and_read_exact_bytes(make_cluster):
    # 2 MiB for every GET together; each 6 MiB object is six 1 MiB stripes, read in
    # batches of one stripe (a 256 KiB pod request per block).
    cluster = await make_cluster(read_buffer_bytes=2 * MiB, read_batch_bytes=256 << 10)
    bodies = {f"o{i}": os.urandom(6 * MiB) for i in range(6)}
    for key, data in bodies.items():
        await cluster.put(key, data)
    budget = cluster.service._ctx.read_budget
    peak = 0

    async def read(key: str) -> str:
        nonlocal peak
        reader = await cluster.service.open_object("b", key)
        digest = hashlib.md5()
        async for piece in reader:
            peak = max(peak, budget.held)
            digest.update(piece)
            await asyncio.sleep(0.001)  # a client taking its time
        return digest.hexdigest()

    digests = await asyncio.gather(*(read(key) for key in bodies for _ in range(2)))
    assert digests == [hashlib.md5(bodies[key]).hexdigest() for key in bodies for _ in range(2)]
    assert 0 < peak <= budget.limit
    assert budget.held == 0  # every charge given back


async def test_a_get_dropped_midway_gives_its_charges_back(make_cluster):
    cluster = await make_cluster(read_batch_bytes=256 << 10)
    await cluster.put("k", os.urandom(8 * MiB))
    budget = cluster.service._ctx.read_budget
    reader = await cluster.service.open_object("b", "k")
    pieces = aiter(reader)
    await anext(pieces)
    assert budget.held > 0  # the batch being read, and the one fetched ahead
    await reader.aclose()
    assert budget.held == 0
