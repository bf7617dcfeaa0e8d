"""The store itself refuses a drain that would leave fewer pods than k+m (the rule the
reconciler applies on Kubernetes holds for `kurastore admin pods drain` on the local
platform too), and leaves the registry and the map as they were."""

from __future__ import annotations

from pathlib import Path

import pytest

from kurastore.gateway.admin.cluster import PodRefused, drain_pod, publish_pods
from kurastore.metadata import PodRecord
from kurastore.metadata.sqlite import SQLiteStore


async def test_drain_below_k_plus_m_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    store = await SQLiteStore.open(str(tmp_path / "m.db"), secret_key=b"k" * 32)
    try:
        pods = [PodRecord(f"pod-{i}", f"http://127.0.0.1:{9100 + i}") for i in range(7)]
        first = await publish_pods(store, pods, 6)
        drained = await drain_pod(store, "pod-6", 6)  # 6 left: allowed
        assert drained.epoch == first.epoch + 1
        with pytest.raises(PodRefused) as refused:
            await drain_pod(store, "pod-5", 6)
        assert refused.value.status == 409 and "fewer than k+m = 6" in str(refused.value)
        states = {p.pod_id: p.state for p in await store.list_pods()}
        assert states["pod-5"] == "active"
        latest = await store.latest_placement_map()
        assert latest is not None and latest[0] == drained.epoch
    finally:
        await store.close()
