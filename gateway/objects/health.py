"""PodHealth: what this gateway has lately seen of each pod, so that a hung or
failing pod costs one short wait, not one per request.

Rules:
- Keyed by pod URL and shared by every request of one ObjectService
  (ObjectContext.health). Pure bookkeeping on the event loop: no I/O, no tasks.
- A pod that refused, failed, timed out or was given up on as too slow is
  *suspect* for a cool-down. Readers read around a suspect pod (parity
  instead); writers still send to it but never wait on it beyond a short
  deadline. Only PodUnavailable-like failures count: a missing shard or a full
  disk says nothing about whether the pod answers.
- The cool-down doubles (up to a cap) each time the pod fails again after the
  last cool-down ran out; failures of many requests in flight during one
  episode do not compound, but each one keeps the pod suspect for the cool-down
  from its own time. Any success clears it: writes, which still try suspect
  pods, and reads after the cool-down are the probes that notice a pod came
  back. Until one does, the pod is *on probation*: readers give it the short
  suspect deadline, so a pod that hangs costs one pod_timeout_s, not one per
  cool-down.
- Read latency is an EWMA of successful shard reads; it sets how long a reader
  waits on a pod before it hedges with parity.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from kurastore.gateway.objects.config import ObjectConfig

log = logging.getLogger(__name__)

_ALPHA = 0.2  # weight of the newest latency sample: a few reads move the estimate


@dataclass
class _PodState:
    latency_s: float | None = None  # EWMA of successful reads
    failures: int = 0  # consecutive failures since the last success
    cooldown_s: float = 0.0  # the cool-down of the current episode (0: none)
    suspect_until: float = float("-inf")
    reason: str = ""


@dataclass(frozen=True)
class PodHealthView:
    """One pod as the admin API and the tests see it."""

    url: str
    suspect: bool
    failures: int
    latency_s: float | None
    reason: str


class PodHealth:
    def __init__(
        self, config: ObjectConfig, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._config = config
        self._clock = clock
        self._pods: dict[str, _PodState] = {}

    def _state(self, url: str) -> _PodState:
        state = self._pods.get(url)
        if state is None:
            state = self._pods[url] = _PodState()
        return state

    # --- what requests report ------------------------------------------------------
    def succeeded(self, url: str | None, latency_s: float | None = None) -> None:
        """The pod answered (a shard, a 404, a stored write). `latency_s` only for reads."""
        if url is None:
            return
        state = self._state(url)
        if state.cooldown_s:
            log.info("pod %s answers again after %d failures", url, state.failures)
        state.failures = 0
        state.cooldown_s = 0.0
        state.suspect_until = float("-inf")
        state.reason = ""
        if latency_s is not None:
            old = state.latency_s
            state.latency_s = latency_s if old is None else old + _ALPHA * (latency_s - old)

    def failed(self, url: str | None, reason: str) -> None:
        """The pod refused, failed, timed out or stalled (`reason` says which)."""
        if url is None:
            return
        state = self._state(url)
        now = self._clock()
        state.failures += 1
        state.reason = reason
        if now < state.suspect_until:
            # The same episode, seen by another request: no longer cool-down, but as
            # long a one from now (a pod failing all along stays suspect).
            state.suspect_until = max(state.suspect_until, now + state.cooldown_s)
            return
        cfg = self._config
        state.cooldown_s = (
            min(cfg.suspect_cooldown_max_s, state.cooldown_s * 2)
            if state.cooldown_s
            else cfg.suspect_cooldown_s
        )
        state.suspect_until = now + state.cooldown_s
        log.warning("pod %s is suspect for %.0f s (%s, %d failures in a row)",
                    url, state.cooldown_s, reason, state.failures)

    # --- what requests ask -----------------------------------------------------------
    def is_suspect(self, url: str | None) -> bool:
        if url is None:
            return False
        state = self._pods.get(url)
        return state is not None and self._clock() < state.suspect_until

    def on_probation(self, url: str | None) -> bool:
        """Suspect, or failed since it last answered (its cool-down ran out)."""
        state = self._pods.get(url) if url is not None else None
        return state is not None and state.failures > 0

    def latency_s(self, url: str | None) -> float | None:
        state = self._pods.get(url) if url is not None else None
        return state.latency_s if state is not None else None

    def hedge_delay_s(self, url: str | None) -> float:
        """How long a read of this pod runs before parity is read beside it: a few
        times its usual latency, never below the floor nor above the cap."""
        cfg = self._config
        latency = self.latency_s(url) or 0.0
        return min(cfg.hedge_max_s, max(cfg.hedge_min_s, cfg.hedge_latency_factor * latency))

    def view(self) -> list[PodHealthView]:
        now = self._clock()
        return [
            PodHealthView(url, now < s.suspect_until, s.failures, s.latency_s, s.reason)
            for url, s in sorted(self._pods.items())
        ]
