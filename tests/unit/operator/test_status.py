"""Status computation from the admin API's answers: health verdicts, rebalance view,
registry, and conditions that keep their transition time."""

from __future__ import annotations

from datetime import UTC, datetime

from kurastore.operator.status import health_of, merge_conditions, rebalance_of, store_view


def _pods(ready: int, down: int) -> dict:
    return {"pods": [{"pod_id": f"p{i}", "ready": i < ready, "capacity_bytes": 100,
                      "used_bytes": 10} for i in range(ready + down)], "heal_queue": 0}


def test_health_green_yellow_red() -> None:
    assert health_of(_pods(6, 0), None, 2).status == "green"
    assert health_of(_pods(5, 1), None, 2).status == "yellow"
    assert health_of(_pods(4, 2), None, 2).status == "yellow"
    assert health_of(_pods(3, 3), None, 2).status == "red"  # more down than parity
    assert health_of({"pods": []}, None, 2).status == "red"
    queued = _pods(6, 0) | {"heal_queue": 4}
    assert health_of(queued, None, 2).status == "yellow"


def test_health_counts_objects_below_k_plus_m_from_the_last_scrub() -> None:
    maintenance = {"k": 4, "m": 2, "scrub": {"durability": {
        "objects_by_healthy_blocks": {"6": 90, "5": 7, "4": 3}}}}
    health = health_of(_pods(6, 0), maintenance, 2)
    assert health.objects_degraded == 10
    assert health.status == "green"  # a past pass's count; the heal queue says what is left


def test_store_view_reads_registry_rebalance_and_capacity() -> None:
    pods = {"epoch": 3, "pods": [{"id": "a", "url": "u", "state": "draining", "empty": True,
                                  "slots": 0}]}
    view = store_view(pods, _pods(6, 0) | {"epoch": 3},
                      None, {"done": False, "partitions_left": 9, "partitions_moved": 1},
                      2)
    assert view.reachable and view.epoch == 3
    assert view.registered[0].state == "draining" and view.registered[0].empty
    assert view.rebalance.partitions_left == 9 and not view.rebalance.done
    assert (view.capacity_bytes, view.used_bytes) == (600, 60)
    assert rebalance_of(None).done


def test_conditions_keep_their_transition_time_while_unchanged() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    t1 = datetime(2026, 1, 2, tzinfo=UTC)
    first = merge_conditions([], [{"type": "Ready", "status": "False"}], 1, t0)
    same = merge_conditions(first, [{"type": "Ready", "status": "False"}], 2, t1)
    assert same[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert same[0]["observedGeneration"] == 2
    flipped = merge_conditions(same, [{"type": "Ready", "status": "True"}], 2, t1)
    assert flipped[0]["lastTransitionTime"] == "2026-01-02T00:00:00Z"
