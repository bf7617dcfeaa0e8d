"""The real S3 stack in process, for boto3 tests that need no pod processes:
SQLite metadata, six in-memory pods with a 4+2 placement map, ObjectService and
S3Frontend in an aiohttp app served on a loopback port from a background thread."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from kurastore.gateway.middlewares import REQUEST_ID
from kurastore.gateway.objects.config import ObjectConfig
from kurastore.gateway.objects.service import ObjectService
from kurastore.gateway.objects.topology import Topology
from kurastore.gateway.s3.frontend import S3Frontend, render_s3_error
from kurastore.metadata.sqlite import SQLiteStore
from kurastore.placement import PodSpec, build_map
from support.fakes import InMemoryPods

MiB = 1 << 20
REGION = "us-east-1"


@dataclass
class Server:
    endpoint: str
    pods: InMemoryPods
    users: dict[str, str]  # name -> user id


@web.middleware
async def _errors(request: web.Request, handler):
    request_id = uuid.uuid4().hex[:16].upper()
    request[REQUEST_ID] = request_id
    try:
        return await handler(request)
    except Exception as exc:  # gateway/app.py's error middleware does this in the server
        return render_s3_error(request, exc, request_id)


async def memory_service(
    tmp: Path, users: dict[str, tuple[str, str]]
) -> tuple[SQLiteStore, InMemoryPods, ObjectService, dict[str, str]]:
    """An object service on SQLite in `tmp` and six in-memory pods (4+2, 1 MiB stripes),
    with `users` (name -> (access key, secret)) created; their user ids by name last."""
    store = await SQLiteStore.open(str(tmp / "meta.db"), secret_key=b"s" * 32)
    pods = InMemoryPods(6)
    for record in pods.records():
        await store.put_pod(record)
    cfg = ObjectConfig(k=4, m=2, stripe_size=1 * MiB, pod_timeout_s=2.0)
    pmap = build_map([PodSpec(r.pod_id, r.zone, r.node) for r in pods.records()],
                     cfg.width, partition_bits=6)
    await store.save_placement_map(pmap.epoch, pmap.to_json())
    service = ObjectService(store, pods, await Topology.load(store), cfg)
    ids = {}
    for name, (ak, sk) in users.items():
        user, _ = await service.create_user(name, access_key=ak, secret_key=sk)
        ids[name] = user.user_id
    return store, pods, service, ids


def _serve(tmp: Path, users: dict[str, tuple[str, str]], started: dict,
           stop: threading.Event) -> None:
    async def main() -> None:
        store, pods, service, ids = await memory_service(tmp, users)
        app = web.Application(middlewares=[_errors])
        app.router.add_route("*", r"/{tail:[\s\S]*}", S3Frontend(service, region=REGION).handle)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        started["server"] = Server(f"http://127.0.0.1:{port}", pods, ids)
        # The test thread signals a threading.Event; wait for it off the loop.
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        await runner.cleanup()
        await service.close()
        await store.close()

    try:
        asyncio.run(main())
    except BaseException as exc:  # surfaced by serve_s3_stack
        started["error"] = exc


@contextmanager
def serve_s3_stack(tmp: Path, users: dict[str, tuple[str, str]]) -> Iterator[Server]:
    """Serves the stack until the block ends; `users` maps names to (access, secret)."""
    started: dict = {}
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(tmp, users, started, stop), daemon=True)
    thread.start()
    for _ in range(400):
        if "server" in started or "error" in started:
            break
        threading.Event().wait(0.025)
    if "error" in started:
        raise started["error"]
    try:
        yield started["server"]
    finally:
        stop.set()
        thread.join(10)
