"""Leases: one holder at a time, renewals, release, takeover after the ttl."""

from __future__ import annotations

import asyncio

from kurastore.metadata import Store


async def test_one_holder_renewal_and_release(store: Store) -> None:
    assert await store.try_acquire_lease("maintenance", "gw-a", 30.0)
    assert not await store.try_acquire_lease("maintenance", "gw-b", 30.0)
    assert await store.try_acquire_lease("maintenance", "gw-a", 30.0)  # renewal
    assert await store.try_acquire_lease("other", "gw-b", 30.0)  # leases are independent
    await store.release_lease("maintenance", "gw-b")  # not the holder: no effect
    assert not await store.try_acquire_lease("maintenance", "gw-b", 30.0)
    await store.release_lease("maintenance", "gw-a")
    assert await store.try_acquire_lease("maintenance", "gw-b", 30.0)
    assert not await store.try_acquire_lease("maintenance", "gw-a", 30.0)


async def test_expired_lease_is_taken_over(store: Store) -> None:
    assert await store.try_acquire_lease("maintenance", "gw-a", 0.3)
    assert not await store.try_acquire_lease("maintenance", "gw-b", 0.3)
    await asyncio.sleep(0.5)  # gw-a stopped renewing (it died)
    assert await store.try_acquire_lease("maintenance", "gw-b", 30.0)
    # The old holder comes back: it must not get the lease back by "renewing".
    assert not await store.try_acquire_lease("maintenance", "gw-a", 0.3)


async def test_racing_acquirers_have_one_winner(store: Store) -> None:
    results = await asyncio.gather(
        *(store.try_acquire_lease("race", f"gw-{i}", 30.0) for i in range(16))
    )
    assert results.count(True) == 1
