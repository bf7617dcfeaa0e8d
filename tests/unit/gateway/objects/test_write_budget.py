"""The gateway-wide write budget: the encoded stripes all PUTs together may hold."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from kurastore.gateway.objects.api import PutOptions
from kurastore.gateway.objects.budget import StripeCharge, WriteBudget
from kurastore.gateway.objects.errors import QuorumNotReached

MiB = 1 << 20
STRIPE_CHARGE = 3 * MiB // 2  # a 1 MiB stripe encoded 4+2


async def test_a_charge_that_does_not_fit_waits_its_turn_first_come_first_served() -> None:
    budget = WriteBudget(10, wait_s=5.0)
    assert await budget.take(6) == 6
    big = asyncio.create_task(budget.take(8))
    await asyncio.sleep(0)
    small = asyncio.create_task(budget.take(1))  # would fit, but comes after a waiter
    await asyncio.sleep(0.01)
    assert not big.done() and not small.done()
    budget.give(6)
    assert await big == 8 and await small == 1
    assert budget.held == 9 and budget.waits == 2
    budget.give(8)
    budget.give(1)
    assert await budget.take(100) == 10  # a charge above the budget is cut to it
    budget.give(10)
    assert budget.held == 0


async def test_a_wait_is_cut_off_and_a_cancelled_waiter_holds_nothing() -> None:
    budget = WriteBudget(10, wait_s=0.05)
    assert await budget.take(10) == 10
    assert await budget.take(5) == 0  # waited wait_s, then goes on uncharged
    assert budget.timeouts == 1 and budget.held == 10
    waiter = asyncio.create_task(budget.take(5))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    budget.give(10)
    assert budget.held == 0


async def test_a_stripe_charge_comes_back_when_its_last_stream_is_done_and_never_twice():
    budget = WriteBudget(100, wait_s=1.0)
    charge = StripeCharge(budget, await budget.take(10))
    charge.sent_to(3)
    charge.stream_done()
    charge.stream_done()
    assert budget.held == 10 and not charge.released  # the stripe's buffer is still in use
    charge.stream_done()
    assert budget.held == 0 and charge.released
    charge.stream_done()
    charge.release_all()
    assert budget.held == 0


async def _sampled(budget: WriteBudget, work: asyncio.Future) -> int:
    """The most `budget` held while `work` ran."""
    peak = 0
    while not work.done():
        peak = max(peak, budget.held)
        await asyncio.sleep(0)
    return peak


async def test_concurrent_streamed_puts_stay_within_the_budget(make_cluster):
    # Room for three encoded stripes in all: eight 6 MiB PUTs (streamed, six stripes
    # each) keep two stripes in flight apiece when they can, so most must wait.
    cluster = await make_cluster(write_buffer_bytes=3 * STRIPE_CHARGE)
    budget = cluster.service._ctx.write_budget
    bodies = {f"o{i}": os.urandom(6 * MiB) for i in range(8)}
    puts = asyncio.ensure_future(asyncio.gather(
        *(cluster.put(key, data, chunk=256 << 10) for key, data in bodies.items())))
    peak = await _sampled(budget, puts)
    await puts
    assert 0 < peak <= budget.limit
    assert budget.waits > 0 and budget.timeouts == 0
    assert budget.held == 0  # every charge given back
    for key, data in bodies.items():
        assert await cluster.read(key) == data


async def test_concurrent_burst_puts_are_charged_too(make_cluster):
    cluster = await make_cluster(write_buffer_bytes=4 * MiB)
    budget = cluster.service._ctx.write_budget
    bodies = {f"s{i}": os.urandom(3 * MiB // 2) for i in range(10)}  # a burst each
    puts = asyncio.ensure_future(asyncio.gather(
        *(cluster.put(key, data) for key, data in bodies.items())))
    peak = await _sampled(budget, puts)
    await puts
    assert 0 < peak <= budget.limit and budget.waits > 0
    assert budget.held == 0
    for key, data in bodies.items():
        assert await cluster.read(key) == data


async def test_a_slow_uploader_holds_no_charge_for_stripes_the_pods_took(make_cluster):
    cluster = await make_cluster()
    budget = cluster.service._ctx.write_budget
    more = asyncio.Event()
    data = os.urandom(8 * MiB)

    async def body() -> AsyncIterator[bytes]:
        yield data[: 4 * MiB]
        await more.wait()  # the client goes quiet after four stripes
        yield data[4 * MiB :]

    put = asyncio.create_task(cluster.service.put_object(
        "b", "slow", body(), PutOptions(content_length=len(data))))
    # Four stripes cut; all but the one still in flight (stripes_in_flight 2) were sent,
    # and the pods took them: only that one's charge is left.
    for _ in range(200):
        await asyncio.sleep(0.01)
        if budget.held <= STRIPE_CHARGE and cluster.pods.pods[0].calls:
            break
    assert 0 < budget.held <= STRIPE_CHARGE
    more.set()
    await put
    assert budget.held == 0
    assert await cluster.read("slow") == data


async def test_failed_and_cancelled_puts_give_back_their_charges(make_cluster):
    cluster = await make_cluster()
    budget = cluster.service._ctx.write_budget
    more = asyncio.Event()

    async def stalling_body() -> AsyncIterator[bytes]:
        yield os.urandom(3 * MiB)
        await more.wait()
        yield os.urandom(3 * MiB)

    # Three pods die while the client is quiet: the write loses its quorum.
    put = asyncio.create_task(cluster.service.put_object(
        "b", "lost", stalling_body(), PutOptions(content_length=6 * MiB)))
    await asyncio.sleep(0.1)
    cluster.pods.kill(0, 1, 2)
    more.set()
    with pytest.raises(QuorumNotReached):
        await put
    assert budget.held == 0
    cluster.pods.revive(0, 1, 2)

    more = asyncio.Event()
    put = asyncio.create_task(cluster.service.put_object(
        "b", "dropped", stalling_body(), PutOptions(content_length=6 * MiB)))
    await asyncio.sleep(0.1)
    assert budget.held > 0
    put.cancel()  # the client went away mid-body
    with pytest.raises(asyncio.CancelledError):
        await put
    assert budget.held == 0


async def test_a_spent_budget_delays_a_put_but_never_blocks_it(make_cluster):
    cluster = await make_cluster(write_buffer_bytes=4 * MiB, write_budget_wait_s=0.05)
    budget = cluster.service._ctx.write_budget
    hog = await budget.take(4 * MiB)  # held elsewhere and never given back meanwhile
    data = os.urandom(5 * MiB)
    await asyncio.wait_for(cluster.put("k", data), timeout=5)
    assert budget.timeouts >= 5  # each stripe waited, then went on uncharged
    assert budget.held == hog
    budget.give(hog)
    assert await cluster.read("k") == data


async def test_a_put_waiting_for_the_budget_takes_no_more_of_its_body(make_cluster):
    cluster = await make_cluster(write_buffer_bytes=4 * MiB)
    budget = cluster.service._ctx.write_budget
    hog = await budget.take(4 * MiB)
    data = os.urandom(3 * MiB)
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for start in range(0, len(data), 256 << 10):
            pulled += 1
            yield data[start : start + (256 << 10)]

    put = asyncio.create_task(cluster.service.put_object(
        "b", "waits", body(), PutOptions(content_length=len(data))))
    await asyncio.sleep(0.2)
    # The first stripe is charged before any of it is cut: the PUT waits with one
    # 256 KiB chunk in hand, the rest of the body left to the client (TCP backpressure).
    assert pulled == 1 and not put.done()
    budget.give(hog)
    await put
    assert budget.held == 0 and budget.timeouts == 0
    assert await cluster.read("waits") == data
