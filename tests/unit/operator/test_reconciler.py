"""The reconciler as pure functions: spec + observed state -> plan, for create, scale out,
scale in (drain, remove, refused), pod lost, rolling upgrade and paused."""

from __future__ import annotations

from dataclasses import replace

from kurastore.operator.reconciler import (
    DeletePool,
    DrainPod,
    Health,
    Observed,
    ObservedPod,
    Rebalance,
    RegisteredPod,
    RegisterPods,
    RemovePod,
    RestartPod,
    StoreView,
    plan,
)
from kurastore.operator.spec import parse_spec
from kurastore.operator.status import compute_status

IMAGE = "kurastore:1"


def spec_of(pods: int = 6, image: str = IMAGE, **extra: object) -> object:
    return parse_spec({"image": image, "erasure": {"dataBlocks": 4, "parityBlocks": 2},
                       "pools": [{"name": "a", "pods": pods}], **extra})


def pods_of(count: int, *, ready: bool = True, image: str = IMAGE,
            start: int = 0) -> tuple[ObservedPod, ...]:
    return tuple(ObservedPod(f"s-a-{i}", "a", i, ready, f"http://10.0.0.{i}:9100", image)
                 for i in range(start, count))


def registered(count: int, state: str = "active", empty: bool = False,
               start: int = 0) -> tuple[RegisteredPod, ...]:
    return tuple(RegisteredPod(f"s-a-{i}", f"http://10.0.0.{i}:9100", state, empty)
                 for i in range(start, count))


def green(regs: tuple[RegisteredPod, ...], epoch: int = 1, **rebalance: object) -> StoreView:
    return StoreView(reachable=True, epoch=epoch, registered=regs,
                     health=Health("green", len(regs)), rebalance=Rebalance(**rebalance))


def test_create_waits_for_every_pod_then_registers_them_in_one_call() -> None:
    spec = spec_of()
    some = Observed(pods=pods_of(4) + pods_of(6, ready=False, start=4),
                    replicas={"a": 6}, store=StoreView(reachable=True))
    first = plan("s", spec, some)
    assert first.replicas == {"a": 6}
    assert first.actions == ()
    assert any("not ready" in w for w in first.waiting)

    all_ready = replace(some, pods=pods_of(6))
    second = plan("s", spec, all_ready)
    assert len(second.actions) == 1
    action = second.actions[0]
    assert isinstance(action, RegisterPods)
    assert [p.pod_id for p in action.pods] == [f"s-a-{i}" for i in range(6)]
    assert action.pods[0].url == "http://10.0.0.0:9100"


def test_nothing_happens_before_the_statefulset_exists_but_it_is_sized() -> None:
    result = plan("s", spec_of(), Observed(store=StoreView(reachable=True)))
    assert result.replicas == {"a": 6}
    assert result.actions == ()


def test_steady_state_plans_nothing_and_reports_ready() -> None:
    spec = spec_of()
    observed = Observed(pods=pods_of(6), replicas={"a": 6}, store=green(registered(6)))
    result = plan("s", spec, observed)
    assert result.actions == () and result.refusals == ()
    status = compute_status(spec, observed, result, generation=3, endpoints={})
    assert status["phase"] == "Ready"
    assert status["pods"] == "6/6"
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True" and ready["observedGeneration"] == 3


def test_scale_out_registers_new_pods_once_all_are_ready() -> None:
    spec = spec_of(8)
    asked = Observed(pods=pods_of(6), replicas={"a": 6}, store=green(registered(6)))
    assert compute_status(spec, asked, plan("s", spec, asked), generation=2,
                          endpoints={})["phase"] == "Scaling"
    half = Observed(pods=pods_of(7) + pods_of(8, ready=False, start=7), replicas={"a": 6},
                    store=green(registered(6)))
    result = plan("s", spec, half)
    assert result.replicas == {"a": 8}
    assert result.actions == ()  # s-a-6 waits for s-a-7: one new epoch, not two
    assert compute_status(spec, half, result, generation=2, endpoints={})["phase"] == "Scaling"

    ready = replace(half, pods=pods_of(8), replicas={"a": 8})
    result = plan("s", spec, ready)
    assert len(result.actions) == 1 and isinstance(result.actions[0], RegisterPods)
    assert [p.pod_id for p in result.actions[0].pods] == ["s-a-6", "s-a-7"]
    assert compute_status(spec, ready, result, generation=2,
                          endpoints={})["phase"] == "Scaling"


def test_rebalance_in_progress_shows_in_status() -> None:
    spec = spec_of(8)
    view = green(registered(8), epoch=2, done=False, target_epoch=2, partitions_moved=30,
                 partitions_left=70, bytes_moved=3 << 20, bytes_left=7 << 20)
    observed = Observed(pods=pods_of(8), replicas={"a": 8}, store=view)
    result = plan("s", spec, observed)
    status = compute_status(spec, observed, result, generation=2, endpoints={})
    assert status["phase"] == "Rebalancing"
    assert status["rebalance"]["progress"] == "30%"
    assert status["rebalance"]["partitionsLeft"] == 70
    assert status["placementEpoch"] == 2
    cond = {c["type"]: c["status"] for c in status["conditions"]}
    assert cond["Rebalancing"] == "True" and cond["Ready"] == "False"


def test_scale_in_drains_first_and_keeps_the_pods_meanwhile() -> None:
    spec = spec_of(6)
    observed = Observed(pods=pods_of(8), replicas={"a": 8}, store=green(registered(8)))
    result = plan("s", spec, observed)
    assert result.replicas == {"a": 8}
    assert set(result.actions) == {DrainPod("s-a-6"), DrainPod("s-a-7")}
    assert compute_status(spec, observed, result, generation=1,
                          endpoints={})["phase"] == "Draining"


def test_scale_in_waits_while_a_drained_pod_still_holds_data() -> None:
    spec = spec_of(6)
    regs = registered(6) + registered(8, "draining", empty=False, start=6)
    result = plan("s", spec, Observed(pods=pods_of(8), replicas={"a": 8}, store=green(regs)))
    assert result.actions == ()
    assert result.replicas == {"a": 8}
    assert any("s-a-7 draining" in w for w in result.waiting)


def test_scale_in_removes_empty_pods_then_shrinks_the_statefulset() -> None:
    spec = spec_of(6)
    regs = (*registered(6), RegisteredPod("s-a-6", "u6", "draining", empty=False),
            RegisteredPod("s-a-7", "u7", "draining", empty=True))
    result = plan("s", spec, Observed(pods=pods_of(8), replicas={"a": 8}, store=green(regs)))
    assert result.actions == (RemovePod("s-a-7"),)
    assert result.replicas == {"a": 8}  # s-a-6 still holds data: ordinal 6 stays
    gone = plan("s", spec, Observed(pods=pods_of(8), replicas={"a": 8},
                                    store=green(registered(6))))
    assert gone.replicas == {"a": 6}
    assert gone.actions == ()


def test_scale_in_below_k_plus_m_is_refused_with_a_condition() -> None:
    spec = spec_of(5)
    observed = Observed(pods=pods_of(6), replicas={"a": 6}, store=green(registered(6)))
    result = plan("s", spec, observed)
    assert result.replicas == {"a": 6}
    assert result.actions == ()
    assert [r.reason for r in result.refusals] == ["ScaleInRefused"]
    status = compute_status(spec, observed, result, generation=4, endpoints={})
    refused = next(c for c in status["conditions"] if c["type"] == "ScaleInRefused")
    assert refused["status"] == "True" and "fewer than" in refused["message"]


def test_a_pool_removed_from_the_spec_drains_then_goes() -> None:
    spec = parse_spec({"pools": [{"name": "a", "pods": 6}]})
    b_pods = tuple(ObservedPod(f"s-b-{i}", "b", i, True, f"http://10.1.0.{i}:9100", IMAGE)
                   for i in range(2))
    observed = Observed(pods=pods_of(6) + b_pods, replicas={"a": 6, "b": 2},
                        store=green((*registered(6), RegisteredPod("s-b-0", "x", "active"))))
    result = plan("s", spec, observed)
    assert DrainPod("s-b-0") in result.actions
    assert result.replicas["b"] == 1
    emptied = replace(observed, store=green(registered(6)))
    assert plan("s", spec, emptied).actions == (DeletePool("b"),)


def test_pod_lost_reports_degraded_and_waits() -> None:
    spec = spec_of()
    pods = (*pods_of(5), ObservedPod("s-a-5", "a", 5, False, None, IMAGE))
    view = StoreView(reachable=True, epoch=1, registered=registered(6),
                     health=Health("yellow", 5, 1, heal_queue=40))
    observed = Observed(pods=pods, replicas={"a": 6}, store=view)
    result = plan("s", spec, observed)
    assert result.actions == ()
    status = compute_status(spec, observed, result, generation=1, endpoints={})
    assert status["phase"] == "Degraded"
    assert status["health"] == {"status": "yellow", "podsOnline": 5, "podsOffline": 1,
                                "objectsDegraded": 0, "healQueue": 40}
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True"


def test_replacement_pod_with_a_new_address_is_registered_again() -> None:
    spec = spec_of()
    pods = (*pods_of(5), ObservedPod("s-a-5", "a", 5, True, "http://10.9.9.9:9100", IMAGE))
    result = plan("s", spec, Observed(pods=pods, replicas={"a": 6}, store=green(registered(6))))
    assert len(result.actions) == 1
    assert [(p.pod_id, p.url) for p in result.actions[0].pods] == [
        ("s-a-5", "http://10.9.9.9:9100")]


def test_upgrade_restarts_one_pod_at_a_time_only_while_green() -> None:
    spec = spec_of(image="kurastore:2")
    old = pods_of(6, image=IMAGE)
    result = plan("s", spec, Observed(pods=old, replicas={"a": 6}, store=green(registered(6))))
    assert result.actions == (RestartPod("s-a-5"),)
    assert result.upgrading

    restarting = (*old[:5], replace(old[5], ready=False, image="kurastore:2"))
    result = plan("s", spec, Observed(pods=restarting, replicas={"a": 6},
                                      store=green(registered(6))))
    assert result.actions == ()

    back = (*old[:5], replace(old[5], image="kurastore:2"))
    healing = StoreView(reachable=True, epoch=1, registered=registered(6),
                        health=Health("yellow", 6, 0, heal_queue=3))
    result = plan("s", spec, Observed(pods=back, replicas={"a": 6}, store=healing))
    assert result.actions == ()
    assert any("health is yellow" in w for w in result.waiting)

    result = plan("s", spec, Observed(pods=back, replicas={"a": 6}, store=green(registered(6))))
    assert result.actions == (RestartPod("s-a-4"),)


def test_upgrade_waits_for_the_rebalance() -> None:
    spec = spec_of(image="kurastore:2")
    view = green(registered(6), done=False, partitions_left=5)
    result = plan("s", spec, Observed(pods=pods_of(6), replicas={"a": 6}, store=view))
    assert result.actions == ()


def test_paused_plans_nothing_and_keeps_sizes() -> None:
    spec = spec_of(8, paused=True)
    observed = Observed(pods=pods_of(6), replicas={"a": 6}, store=green(registered(6)))
    result = plan("s", spec, observed)
    assert result.actions == () and result.replicas == {"a": 6}
    assert compute_status(spec, observed, result, generation=1,
                          endpoints={})["phase"] == "Paused"


def test_unreachable_store_sizes_statefulsets_but_acts_on_nothing() -> None:
    spec = spec_of(6)
    result = plan("s", spec, Observed(pods=pods_of(8), replicas={"a": 8}, store=StoreView()))
    assert result.actions == ()
    assert result.replicas == {"a": 8}  # never shrink what could not be drained
    status = compute_status(spec, Observed(pods=pods_of(8), replicas={"a": 8}), result,
                            generation=1, endpoints={})
    assert status["phase"] == "Pending" and status["health"]["status"] == "unknown"
