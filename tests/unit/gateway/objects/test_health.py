"""PodHealth on its own, with a clock the test moves: cool-downs, doubling,
recovery and the hedge delay."""

from __future__ import annotations

import pytest

from kurastore.gateway.objects.config import ObjectConfig
from kurastore.gateway.objects.health import PodHealth

POD = "http://pod-0.test:9101"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def health_with(clock: Clock, **config: float) -> PodHealth:
    return PodHealth(ObjectConfig(**config), clock)  # type: ignore[arg-type]


def test_a_failure_makes_a_pod_suspect_for_the_cooldown(clock):
    health = health_with(clock, suspect_cooldown_s=10.0)
    assert not health.is_suspect(POD)
    health.failed(POD, "unreachable")
    assert health.is_suspect(POD)
    clock.now += 9.9
    assert health.is_suspect(POD)
    clock.now += 0.2
    assert not health.is_suspect(POD)
    assert not health.is_suspect("http://other.test:9101")


def test_cooldown_doubles_while_the_pod_keeps_failing_up_to_the_cap(clock):
    health = health_with(clock, suspect_cooldown_s=10.0, suspect_cooldown_max_s=35.0)
    lengths = []
    for _ in range(4):
        health.failed(POD, "stalled")
        start = clock.now
        while health.is_suspect(POD):
            clock.now += 0.5
        lengths.append(clock.now - start)
    assert lengths == [10.0, 20.0, 35.0, 35.0]


def test_failures_of_one_episode_do_not_compound(clock):
    health = health_with(clock, suspect_cooldown_s=10.0)
    for _ in range(50):  # many requests in flight hit the same hung pod
        health.failed(POD, "slow")
    clock.now += 10.1
    assert not health.is_suspect(POD)
    assert health.view()[0].failures == 50


def test_success_clears_the_pod_and_resets_the_cooldown(clock):
    health = health_with(clock, suspect_cooldown_s=10.0)
    health.failed(POD, "unreachable")
    clock.now += 11
    health.failed(POD, "unreachable")  # second episode: 20 s
    health.succeeded(POD)
    assert not health.is_suspect(POD)
    health.failed(POD, "unreachable")  # back to the base cool-down
    clock.now += 10.1
    assert not health.is_suspect(POD)
    [view] = health.view()
    assert (view.url, view.suspect, view.failures) == (POD, False, 1)


def test_hedge_delay_follows_the_pods_latency_within_bounds(clock):
    health = health_with(clock, hedge_min_s=0.5, hedge_latency_factor=4.0, hedge_max_s=2.0)
    assert health.hedge_delay_s(POD) == 0.5  # nothing known yet: the floor
    health.succeeded(POD, latency_s=0.01)
    assert health.hedge_delay_s(POD) == 0.5
    for _ in range(40):
        health.succeeded(POD, latency_s=0.3)
    assert health.latency_s(POD) == pytest.approx(0.3, rel=0.01)
    assert health.hedge_delay_s(POD) == pytest.approx(1.2, rel=0.01)
    for _ in range(40):
        health.succeeded(POD, latency_s=5.0)
    assert health.hedge_delay_s(POD) == 2.0  # capped


def test_unknown_url_is_ignored(clock):
    health = health_with(clock)
    health.failed(None, "unreachable")
    health.succeeded(None, 1.0)
    assert not health.is_suspect(None)
    assert health.view() == []


@pytest.mark.parametrize("bad", [
    {"hedge_min_s": 0}, {"hedge_min_s": 3.0, "hedge_max_s": 2.0},
    {"suspect_cooldown_s": 20.0, "suspect_cooldown_max_s": 10.0},
    {"straggler_grace_min_s": 0}, {"suspect_grace_s": -1},
])
def test_config_refuses_nonsense(bad):
    with pytest.raises(ValueError):
        ObjectConfig(**bad)  # type: ignore[arg-type]


def test_straggler_grace_scales_with_the_peers_time():
    config = ObjectConfig(straggler_grace_min_s=1.0, straggler_grace_factor=0.5)
    assert config.straggler_grace_s(0.0) == 1.0
    assert config.straggler_grace_s(10.0) == 5.0
