"""The work queue's guarantees (dedup, one worker per key, delays) and the spec parser's
defaults and refusals."""

from __future__ import annotations

import asyncio

import pytest

from kurastore.operator.spec import SpecError, parse_spec, parse_user_spec
from kurastore.operator.workqueue import WorkQueue


async def test_a_key_added_many_times_is_processed_once() -> None:
    queue = WorkQueue()
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    assert await queue.get() == "a"
    assert await queue.get() == "b"
    assert len(queue) == 0


async def test_a_key_changed_while_processed_comes_back_once_afterwards() -> None:
    queue = WorkQueue()
    queue.add("a")
    key = await queue.get()
    queue.add("a")
    queue.add("a")
    with pytest.raises(TimeoutError):  # never handed to a second worker meanwhile
        await asyncio.wait_for(queue.get(), 0.05)
    queue.done(key)
    assert await asyncio.wait_for(queue.get(), 1) == "a"


async def test_delayed_keys_come_when_due_and_the_earliest_request_wins() -> None:
    queue = WorkQueue()
    loop = asyncio.get_running_loop()
    start = loop.time()
    queue.add_after("slow", 5.0)
    queue.add_after("slow", 0.1)
    queue.add_after("slow", 3.0)  # later than already planned: ignored
    assert await asyncio.wait_for(queue.get(), 2) == "slow"
    assert 0.08 <= loop.time() - start < 1.0


async def test_adding_now_supersedes_a_delay() -> None:
    queue = WorkQueue()
    queue.add_after("k", 10.0)
    queue.add("k")
    assert await asyncio.wait_for(queue.get(), 1) == "k"
    queue.done("k")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(queue.get(), 0.1)


def test_spec_defaults() -> None:
    spec = parse_spec({"pools": [{"name": "a", "pods": 6}]})
    assert (spec.erasure.data_blocks, spec.erasure.parity_blocks) == (4, 2)
    assert spec.total_pods == 6
    assert spec.metadata.kind == "sqlite" and spec.gateway_replicas == 1
    assert spec.reclaim_policy == "Retain" and spec.pod_address == "dns"
    assert spec.pools[0].storage_size == "10Gi"


def test_sqlite_metadata_forces_one_gateway() -> None:
    spec = parse_spec({"pools": [{"name": "a", "pods": 6}], "gateway": {"replicas": 3}})
    assert spec.gateway_replicas == 1


@pytest.mark.parametrize(("doc", "field"), [
    ({"pools": [{"name": "a", "pods": True}]}, "spec.pools[0].pods"),
    ({"pools": [{"pods": 3}]}, "spec.pools[0].name"),
    ({"pools": [{"name": "a", "pods": 3}, {"name": "a", "pods": 3}]}, "spec.pools"),
    ({"pools": [], "metadata": {"type": "postgresql"}}, "dsnSecretRef"),
    ({"pools": [], "podAddress": "mdns"}, "spec.podAddress"),
])
def test_spec_errors_name_the_field(doc: dict, field: str) -> None:
    with pytest.raises(SpecError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_spec(doc)


def test_user_spec_defaults_to_its_own_namespace_and_name() -> None:
    spec = parse_user_spec({"storeRef": {"name": "demo"}}, "apps", "web")
    assert (spec.store, spec.store_namespace, spec.user_name, spec.secret_name) == (
        "demo", "apps", "web", "web-keys")
    with pytest.raises(SpecError):
        parse_user_spec({}, "apps", "web")
