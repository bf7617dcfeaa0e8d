"""Topology: which placement map is current, older maps by epoch, and pod URLs.

Rules:
- New writes use the current map; a version (or upload) pins the epoch it was
  written under, and reads use `get_map(version.epoch)`: a read never guesses.
- Maps are immutable data cached by epoch; `refresh()` swaps in the latest map
  and pod list atomically (plain attribute assignment on the loop).
- Publishing a new pod set is not done here (gateway/admin/cluster.py).
- Other gateways' changes arrive as store notices (Store.on_change: LISTEN/NOTIFY
  on PostgreSQL): a "placement", "pods" or "*" notice marks the cache stale and
  refreshes it at once, so a new epoch is seen within the notice's delivery and one
  refresh (milliseconds). A notice that arrives while a refresh is running gets a
  refresh of its own after it: the running one may have read the store before the
  change. Polling stays as the fallback: `ensure_fresh` reloads anything older than
  `max_age_s`, which bounds the delay when notices are lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from kurastore.metadata import PodRecord, Store
from kurastore.placement import PlacementMap

log = logging.getLogger(__name__)
_TOPICS = ("placement", "pods", "*")


class NoPlacementMap(LookupError):
    """No placement map was published yet: only inline objects can be written."""


class Topology:
    def __init__(self, store: Store, max_age_s: float = 5.0) -> None:
        self._store = store
        self._max_age_s = max_age_s
        self._loaded_at = float("-inf")
        self._maps: dict[int, PlacementMap] = {}
        self._current: PlacementMap | None = None
        self._pods: dict[str, PodRecord] = {}
        self._refreshing: asyncio.Task[None] | None = None
        self._noticed = 0  # change notices so far: a refresh is current only past them
        store.on_change(self._changed)

    @classmethod
    async def load(cls, store: Store, max_age_s: float = 5.0) -> Topology:
        topology = cls(store, max_age_s)
        await topology.refresh()
        return topology

    def _changed(self, topic: str) -> None:
        if topic not in _TOPICS:
            return
        self._noticed += 1
        self._loaded_at = float("-inf")
        if self._refreshing is None or self._refreshing.done():
            with contextlib.suppress(RuntimeError):  # no running loop: next ensure_fresh
                self._refreshing = asyncio.get_running_loop().create_task(self._refresh_quietly())

    async def _refresh_quietly(self) -> None:
        """Refresh until no notice came in during the last refresh."""
        seen = -1
        while seen != self._noticed:
            seen = self._noticed
            try:
                await self.refresh()
            except Exception as exc:  # the database may be away; ensure_fresh tries again
                log.info("topology refresh after a change notice failed: %r", exc)
                return

    async def ensure_fresh(self) -> None:
        """Refresh when the last load is older than `max_age_s`: a new epoch or a pod
        that moved to another URL is picked up within that time, at the cost of two
        small metadata reads per interval."""
        if time.monotonic() - self._loaded_at > self._max_age_s:
            await self.refresh()

    async def refresh(self) -> None:
        """Reload the latest map and the pod list from the store."""
        noticed = self._noticed
        latest = await self._store.latest_placement_map()
        pods = await self._store.list_pods()
        if latest is not None:
            epoch, text = latest
            current = self._maps.get(epoch) or await _parse(text)
            self._maps[epoch] = current
            self._current = current
        self._pods = {pod.pod_id: pod for pod in pods}
        if noticed == self._noticed:  # else a change came in meanwhile: stay stale
            self._loaded_at = time.monotonic()

    @property
    def current(self) -> PlacementMap:
        if self._current is None:
            raise NoPlacementMap("no placement map has been published")
        return self._current

    @property
    def has_map(self) -> bool:
        return self._current is not None

    async def get_map(self, epoch: int) -> PlacementMap:
        """The map of `epoch` (raises PlacementMapNotFound for an unknown epoch)."""
        found = self._maps.get(epoch)
        if found is None:
            found = await _parse(await self._store.get_placement_map(epoch))
            self._maps[epoch] = found
        return found

    def url_of(self, pod_id: str) -> str | None:
        pod = self._pods.get(pod_id)
        return pod.url if pod is not None and pod.state != "removed" else None

    @property
    def pods(self) -> list[PodRecord]:
        return sorted(self._pods.values(), key=lambda pod: pod.pod_id)


async def _parse(text: str) -> PlacementMap:
    # In a thread: a map of 8192 partitions takes ~50 ms to parse, which on the event
    # loop stalled every request in flight when a new epoch was published.
    return await asyncio.to_thread(PlacementMap.from_json, text)
