"""The local platform's desired spec and the pure parts of its adapter: the spec file,
scaling by count, changes the admin API may make, the reconciler over pools of one pod
(draining any pod, not only the last), process start/stop, and volume-loss tracking."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kurastore.operator.local_spec import (
    SPEC_FILE,
    LocalSpec,
    LocalState,
    apply_changes,
    load_spec,
    local_pod_name,
    save_spec,
)
from kurastore.operator.platforms.local_control import (
    observed_pods,
    process_changes,
    rebuilt,
    track_volumes,
    with_lost_volumes,
)
from kurastore.operator.reconciler import (
    DeletePool,
    DrainPod,
    Health,
    Observed,
    RegisteredPod,
    RegisterPods,
    RemovePod,
    StoreView,
    plan,
)
from kurastore.operator.spec import SpecError

SIX = tuple(f"pod-{i}" for i in range(6))


def spec6(**changes: object) -> LocalSpec:
    return LocalSpec(pods=SIX, data_blocks=4, parity_blocks=2).changed(**changes)


def test_spec_file_round_trip_and_generation(tmp_path: Path) -> None:
    assert load_spec(tmp_path) is None
    spec = spec6()
    save_spec(tmp_path, spec)
    doc = json.loads((tmp_path / SPEC_FILE).read_text())
    assert doc["kind"] == "ObjectStore" and doc["spec"]["erasure"] == {
        "dataBlocks": 4, "parityBlocks": 2}
    assert load_spec(tmp_path) == spec
    assert spec.changed(paused=False) is spec  # nothing changed: same generation
    assert spec.changed(paused=True).generation == spec.generation + 1
    (tmp_path / SPEC_FILE).write_text("{not json")
    with pytest.raises(SpecError):
        load_spec(tmp_path)


def test_scaling_by_count_adds_after_the_highest_and_drops_the_highest() -> None:
    spec = spec6(pods=("pod-0", "pod-1", "pod-3", "pod-4", "pod-5", "pod-7"))
    assert spec.with_count(8).pods[-2:] == ("pod-8", "pod-9")
    assert spec.with_count(4).pods == ("pod-0", "pod-1", "pod-3", "pod-4")


def test_admin_changes_are_checked() -> None:
    spec = spec6()
    assert apply_changes(spec, {"pods": 7}).pods[-1] == "pod-6"
    assert apply_changes(spec, {"paused": True}).paused
    for bad in ({"erasure": {"dataBlocks": 2}}, {"pods": ["a"]}, {"pods": ["pod-1", "pod-1"]},
                {"paused": "yes"}, {"pods": -1}):
        with pytest.raises(SpecError):
            apply_changes(spec, bad)


def registered(*pods: tuple[str, str, bool]) -> tuple[RegisteredPod, ...]:
    return tuple(RegisteredPod(p, f"http://h/{p}", state, empty) for p, state, empty in pods)


def observed(running: list[str], regs: tuple[RegisteredPod, ...]) -> Observed:
    pods = observed_pods({p: f"http://h/{p}" for p in running}, dict.fromkeys(running, True))
    return Observed(pods=pods, replicas=dict.fromkeys(running, 1),
                    store=StoreView(reachable=True, registered=regs,
                                    health=Health("green", len(regs))))


def local_plan(spec: LocalSpec, obs: Observed):
    return plan("", spec.object_spec(), obs, name=local_pod_name)


def test_scale_out_registers_the_new_pod_once_it_runs() -> None:
    seven = spec6(pods=(*SIX, "pod-6"))
    regs = registered(*((p, "active", False) for p in SIX))
    first = local_plan(seven, observed(list(SIX), regs))
    assert first.actions == () and first.replicas["pod-6"] == 1
    assert process_changes(first.replicas, list(SIX)) == (["pod-6"], [])
    second = local_plan(seven, observed([*SIX, "pod-6"], regs))
    assert second.actions == (RegisterPods((second.actions[0].pods[0],)),)
    assert second.actions[0].pods[0].pod_id == "pod-6"


def test_any_pod_drains_then_is_removed_then_its_process_stops() -> None:
    seven = [*SIX, "pod-6"]
    spec = spec6(pods=tuple(p for p in seven if p != "pod-2"))  # pod-2 leaves
    regs = [(p, "active", False) for p in seven]
    step = local_plan(spec, observed(seven, registered(*regs)))
    assert step.actions == (DrainPod("pod-2"),) and step.draining == ("pod-2",)
    regs[2] = ("pod-2", "draining", False)
    step = local_plan(spec, observed(seven, registered(*regs)))
    assert step.actions == () and step.replicas["pod-2"] == 1  # kept while it holds data
    regs[2] = ("pod-2", "draining", True)
    step = local_plan(spec, observed(seven, registered(*regs)))
    assert step.actions == (RemovePod("pod-2"),)
    del regs[2]
    step = local_plan(spec, observed(seven, registered(*regs)))
    assert step.actions == (DeletePool("pod-2"),) and step.replicas["pod-2"] == 0
    assert process_changes(step.replicas, seven) == ([], ["pod-2"])


def test_scale_in_below_k_plus_m_is_refused_and_keeps_every_pod() -> None:
    spec = spec6(pods=SIX[:5])
    step = local_plan(spec, observed(list(SIX), registered(*((p, "active", False)
                                                            for p in SIX))))
    assert step.refusals and step.refusals[0].reason == "ScaleInRefused"
    assert step.actions == () and process_changes(step.replicas, list(SIX)) == ([], [])


def test_a_new_volume_id_is_a_lost_volume_until_a_later_clean_scrub() -> None:
    volumes: dict[str, str] = {}
    lost: dict[str, float] = {}
    track_volumes(volumes, lost, {"pod-0": "a", "pod-1": "b"}, now=10.0)
    assert volumes == {"pod-0": "a", "pod-1": "b"} and not lost  # first seen: no loss
    track_volumes(volumes, lost, {"pod-0": None, "pod-1": "b"}, now=11.0)
    assert not lost  # wiped, not started again yet
    track_volumes(volumes, lost, {"pod-0": "c", "pod-1": "b"}, now=12.0)
    assert lost == {"pod-0": 12.0} and volumes["pod-0"] == "c"

    def scrub(start: float, by_blocks: dict[str, int]) -> dict:
        return {"scrub": {"pods": {"pod-0": {"last_full_scrub": start},
                                   "pod-1": {"last_full_scrub": start}},
                          "durability": {"objects_by_healthy_blocks": by_blocks}}}

    assert not rebuilt(lost, scrub(11.0, {"6": 9}), 0, 6)  # the pass began before the loss
    assert not rebuilt(lost, scrub(13.0, {"5": 2, "6": 7}), 0, 6)  # found it short
    assert not rebuilt(lost, scrub(13.0, {"6": 9}), 3, 6)  # heals still queued
    assert rebuilt(lost, scrub(13.0, {"6": 9}), 0, 6)
    view = StoreView(reachable=True, health=Health("green", 6))
    assert with_lost_volumes(view, lost).health.status == "yellow"
    assert with_lost_volumes(view, {}).health.status == "green"


def test_state_survives_as_a_file(tmp_path: Path) -> None:
    state = LocalState({"pod-0": "a"}, {"pod-0": 5.0}, {"phase": "Degraded"})
    state.save(tmp_path)
    assert LocalState.load(tmp_path) == state
    assert LocalState.load(tmp_path / "none") == LocalState()
