"""The local operator's observe/act adapter against real pod processes and the real
in-process gateway (object service, registry, placement, maintenance workers): create,
scale out through the admin hook, drain a pod that is not the last, a refused scale in
below k+m, and a restarted operator carrying on from the files."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from kurastore.gateway.admin.pods import PodAdmin
from kurastore.gateway.app import build_gateway_app
from kurastore.gateway.config import GatewayConfig
from kurastore.gateway.keys import MAINTENANCE, SERVICE
from kurastore.operator.local_spec import SPEC_FILE, LocalSpec, load_spec, save_spec
from kurastore.operator.platforms.local import LocalPods
from kurastore.operator.platforms.local_control import LocalOperator
from kurastore.state import write_secret_file

SECRET = b"c" * 32


async def passes_until(op: LocalOperator, check: Callable[[dict[str, Any]], bool],
                       limit: int = 100) -> dict[str, Any]:
    for _ in range(limit):
        await op.reconcile()
        if check(op.status_doc()):
            return op.status_doc()
        await asyncio.sleep(0.1)
    raise AssertionError(f"not reached: {op.status_doc()}")


def conditions(status: dict[str, Any]) -> dict[str, str]:
    return {c["type"]: c["status"] for c in status["conditions"]}


async def test_local_operator_drives_real_pods(tmp_path: Path) -> None:
    secret_file = tmp_path / "cluster.secret"
    write_secret_file(secret_file, SECRET)
    spec = LocalSpec(pods=("pod-0", "pod-1", "pod-2"), data_blocks=2, parity_blocks=1)
    save_spec(tmp_path, spec)
    pods = LocalPods(tmp_path / "pods", list(spec.pods), secret_file, SECRET,
                     log_dir=tmp_path)
    await pods.start()
    config = GatewayConfig(metadata_path=str(tmp_path / "metadata.db"), cluster_secret=SECRET,
                           metadata_key=b"k" * 32, k=2, m=1)
    runner = web.AppRunner(build_gateway_app(config))
    await runner.setup()
    app = runner.app
    store = PodAdmin(app[SERVICE], app.get(MAINTENANCE))
    try:
        op = LocalOperator(tmp_path, pods, spec, store, "http://127.0.0.1:9")
        # Create: nothing registered; the first passes register all three pods at once.
        ready = await passes_until(op, lambda s: s["phase"] == "Ready")
        listed = await store.list_pods()
        assert [p["id"] for p in listed["pods"]] == ["pod-0", "pod-1", "pod-2"]
        assert listed["epoch"] == 1 and ready["placementEpoch"] == 1
        assert ready["pods"] == "3/3" and ready["health"]["status"] == "green"
        assert ready["endpoints"]["s3"] == "http://127.0.0.1:9"

        # Scale out through the admin hook: the spec file, a process, a registration.
        added = await op.add_pods(1)
        assert [pod_id for pod_id, _ in added] == ["pod-3"]
        assert added[0][1] == pods.pods["pod-3"].url and await pods.ready("pod-3")
        assert load_spec(tmp_path).pods[-1] == "pod-3"
        states = {p["id"]: p["state"] for p in (await store.list_pods())["pods"]}
        assert states == dict.fromkeys(["pod-0", "pod-1", "pod-2", "pod-3"], "active")

        # Drain pod-1 (not the highest): draining, then removed once empty, process gone.
        assert await op.drain_pod("pod-9") is False  # not a pod of the spec
        assert await op.drain_pod("pod-1") is True
        done = await passes_until(op, lambda s: len(s["pools"]) == 3)
        assert "pod-1" not in pods.pods
        assert [p["id"] for p in (await store.list_pods())["pods"]] == [
            "pod-0", "pod-2", "pod-3"]
        assert done["phase"] == "Ready" and conditions(done)["Draining"] == "False"

        # Below k+m: refused with a condition; every pod stays.
        await op.set_spec({"pods": 2})
        refused = await passes_until(op, lambda s: conditions(s)["ScaleInRefused"] == "True")
        assert "fewer than dataBlocks + parityBlocks = 3" in refused["message"]
        assert sorted(pods.pods) == ["pod-0", "pod-2", "pod-3"]
        await op.set_spec({"pods": ["pod-0", "pod-2", "pod-3"]})
        back = await passes_until(op, lambda s: conditions(s)["ScaleInRefused"] == "False")
        ready_since = next(c["lastTransitionTime"] for c in back["conditions"]
                           if c["type"] == "Ready")

        # A restarted operator: the spec and its state from the files, nothing else.
        doc = json.loads((tmp_path / SPEC_FILE).read_text())
        again = LocalOperator(tmp_path, pods, load_spec(tmp_path), store, "http://127.0.0.1:9")
        assert again.spec.pods == ("pod-0", "pod-2", "pod-3")
        assert again.spec.generation == doc["metadata"]["generation"]
        status = await passes_until(again, lambda s: s["phase"] == "Ready")
        assert next(c["lastTransitionTime"] for c in status["conditions"]
                    if c["type"] == "Ready") == ready_since
        assert again.state.volumes.keys() == {"pod-0", "pod-2", "pod-3"}
    finally:
        await runner.cleanup()
        await pods.stop()
