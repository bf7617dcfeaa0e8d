"""The pod's HTTP service: `build_pod_app(config)` -> aiohttp Application.

Routes (all but /healthz and /readyz need the X-Kura-Auth proof, see `auth`; /metrics too
unless `PodConfig.metrics_public`):
    PUT    /v1/shards/{partition}/{shard}          201 ShardInfo JSON | 409 exists | 507 full
    GET    /v1/shards/{partition}/{shard}          the bytes (Range honoured, sendfile)
    HEAD   /v1/shards/{partition}/{shard}          Content-Length, X-Kura-Mtime
    DELETE /v1/shards/{partition}/{shard}          204 | 404
    POST   /v1/shards/{partition}/{shard}/verify   VerifyResult JSON (re-reads every frame)
    DELETE /v1/objects/{partition}/{object_id}[?tag=T]   {"deleted": n}
    GET    /v1/partitions | /v1/partitions/{p}     partitions | a partition's shards
    GET    /v1/usage, /healthz, /readyz, /metrics

Rules:
- Blocking file work runs on the app's bounded I/O executor, never on the loop.
- A PUT streams the body to disk (one write in flight while the next batch arrives) and
  answers only after the shard is durable and visible; on any failure, cut-off body or
  cancellation the partial file is removed before the handler returns.
- Domain errors become statuses in one table, `STATUS_OF`; bodies of errors are
  {"error": <class name>, "message": ...} and never echo headers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_exceptions import HttpProcessingError

from kurastore.erasure import frame_owner
from kurastore.storage._disk import ShardStore, ShardWriter
from kurastore.storage._metrics import CONTENT_TYPE_LATEST, PodMetrics
from kurastore.storage.api import (
    AUTH_HEADER,
    MTIME_HEADER,
    ShardId,
    ShardInfo,
    validate_object_id,
    validate_partition,
    validate_shard_tag,
)
from kurastore.storage.auth import AuthMissing, AuthRejected, check_request
from kurastore.storage.config import PodConfig
from kurastore.storage.errors import (
    InsufficientStorage,
    InvalidRange,
    InvalidShardName,
    PodAuthError,
    PodError,
    ShardExists,
    ShardNotFound,
    ShardTooLarge,
)

__all__ = [
    "IO_EXECUTOR",
    "POD_CONFIG",
    "POD_METRICS",
    "POD_STATE",
    "SHARD_STORE",
    "STATUS_OF",
    "PodState",
    "build_pod_app",
    "status_of",
]

log = logging.getLogger("kurastore.storage")
T = TypeVar("T")

STATUS_OF: dict[type[PodError], int] = {
    InvalidShardName: 400,
    PodAuthError: 403,
    ShardNotFound: 404,
    ShardExists: 409,
    ShardTooLarge: 413,
    InvalidRange: 416,
    InsufficientStorage: 507,
}
_UNAUTHENTICATED = frozenset({"/healthz", "/readyz"})
_BYTES_IN = web.RequestKey("bytes_in", int)
_SHARD_ROUTE = "/v1/shards/{partition}/{name}"
INLINE_READ_BYTES = 1 << 20  # GETs up to this are read in one executor call, not sendfile


@dataclass
class PodState:
    """Mutable facts about the running pod (set by its lifecycle, read by /readyz)."""

    opened: bool = False


POD_CONFIG = web.AppKey("pod_config", PodConfig)
SHARD_STORE = web.AppKey("shard_store", ShardStore)
IO_EXECUTOR = web.AppKey("io_executor", ThreadPoolExecutor)
POD_METRICS = web.AppKey("pod_metrics", PodMetrics)
POD_STATE = web.AppKey("pod_state", PodState)


def _run_io(request: web.Request, fn: Callable[..., T], *args: Any) -> Awaitable[T]:
    loop = asyncio.get_running_loop()
    return loop.run_in_executor(request.app[IO_EXECUTOR], fn, *args)


def _error(status: int, name: str, message: str) -> web.Response:
    return web.json_response({"error": name, "message": message}, status=status)


def _shard_of(request: web.Request) -> tuple[int, ShardId]:
    partition = validate_partition(request.match_info["partition"])
    return partition, ShardId.parse(request.match_info["name"])


def _info_json(info: ShardInfo) -> dict[str, Any]:
    return {
        "partition": info.partition,
        "name": info.shard.name,
        "size": info.size,
        "mtime": info.mtime,
    }


# -- the one middleware: observe, authenticate, map errors ------------------------------------
# One middleware rather than three: each costs a wrapper and a coroutine per request,
# and a pod answers k+m requests for every object written.


@web.middleware
async def _observe(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    """Finish the response here so the log line and metrics see its real size and time."""
    start = time.perf_counter()
    status, bytes_out = 500, 0
    try:
        resp: web.StreamResponse = await _authenticate(request, handler)
        status = resp.status
        if not resp.prepared:
            await resp.prepare(request)
        await resp.write_eof()
        status = resp.status  # FileResponse decides 206/404/416 while preparing
        # Body bytes (the writer's own count includes headers and misses sendfile).
        bytes_out = 0 if request.method == "HEAD" else resp.content_length or 0
        return resp
    except web.HTTPException as exc:
        status = exc.status
        raise
    except (ConnectionError, asyncio.CancelledError):
        status = 499  # the client went away mid-response
        raise
    finally:
        route = request.match_info.route
        name = route.name if route is not None and route.name else "Unknown"
        request.app[POD_METRICS].observe(
            op=name,
            method=request.method,
            path=request.raw_path,
            status=status,
            bytes_in=request.get(_BYTES_IN, 0),
            bytes_out=bytes_out,
            duration_s=time.perf_counter() - start,
            remote=request.remote,
            request_id=request.headers.get("X-Request-Id"),
        )


async def _authenticate(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    config = request.app[POD_CONFIG]
    path = request.path
    if path in _UNAUTHENTICATED or (config.metrics_public and path == "/metrics"):
        return await _map_errors(request, handler)
    try:
        check_request(
            config.secret,
            request.headers.get(AUTH_HEADER),
            request.method,
            request.raw_path,
            max_skew_s=config.max_clock_skew_s,
        )
    except AuthMissing as exc:
        log.warning("refused %s %s: %s", request.method, request.raw_path, exc)
        return _error(401, "PodAuthError", str(exc))
    except AuthRejected as exc:
        log.warning("refused %s %s: %s", request.method, request.raw_path, exc)
        return _error(403, "PodAuthError", str(exc))
    return await _map_errors(request, handler)


def status_of(exc: PodError) -> int | None:
    """The HTTP status that answers `exc` (by its class or a base in STATUS_OF)."""
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return None


async def _map_errors(request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
    try:
        return await handler(request)
    except PodError as exc:
        status = status_of(exc)
        if status is None:
            raise
        return _error(status, type(exc).__name__, str(exc))
    except web.HTTPException:
        raise
    except Exception:
        log.exception("internal error on %s %s", request.method, request.raw_path)
        return _error(500, "InternalError", "internal error")


# -- handlers --------------------------------------------------------------------------------


class _BodyIncomplete(Exception):
    """The request body ended early or broke off."""


async def put_shard(request: web.Request) -> web.StreamResponse:
    partition, shard = _shard_of(request)
    config = request.app[POD_CONFIG]
    expected = request.content_length
    if expected is not None and expected > config.max_shard_bytes:
        raise ShardTooLarge(f"shard larger than {config.max_shard_bytes} bytes")
    try:
        if expected is not None and expected <= config.write_batch_bytes:
            # Small shard: take the whole body, then one trip to the executor.
            body = await _read_exactly(request, expected)
            request[_BYTES_IN] = expected
            store = request.app[SHARD_STORE]
            info = await _run_io(request, store.write_whole, partition, shard, body)
        else:
            info = await _stream_to_disk(request, partition, shard)
    except _BodyIncomplete as exc:
        log.info("PUT %s/%s cut off: %s", partition, shard.name, exc)
        return _error(400, "BodyIncomplete", "request body incomplete")
    return web.json_response(_info_json(info), status=201)


async def _read_exactly(request: web.Request, n: int) -> bytes:
    if n == 0:
        return b""  # aiohttp's empty body reader refuses readexactly(0)
    try:
        return await request.content.readexactly(n)
    except (HttpProcessingError, ConnectionError, asyncio.IncompleteReadError) as exc:
        raise _BodyIncomplete(str(exc)) from exc


async def _stream_to_disk(request: web.Request, partition: int, shard: ShardId) -> ShardInfo:
    """Stream the body into a new shard; the partial file is gone if this raises."""
    config = request.app[POD_CONFIG]
    expected = request.content_length
    # Checked before the body is read: an existing shard costs no transfer and no disk.
    writer: ShardWriter = await _run_io(
        request, request.app[SHARD_STORE].begin_write, partition, shard, expected
    )
    committed = False
    pending: asyncio.Future[None] | None = None
    received = 0
    try:
        batch: list[bytes] = []
        batch_size = 0
        while True:
            try:
                chunk = await request.content.readany()
            except (HttpProcessingError, ConnectionError, asyncio.IncompleteReadError) as exc:
                raise _BodyIncomplete(str(exc)) from exc
            if not chunk:
                break
            received += len(chunk)
            batch.append(chunk)
            batch_size += len(chunk)
            if batch_size >= config.write_batch_bytes:
                # One write in flight while the next batch arrives from the network.
                if pending is not None:
                    await pending
                pending = _run_io(request, writer.write, batch)  # type: ignore[assignment]
                batch, batch_size = [], 0
        if pending is not None:
            await pending
            pending = None
        if batch:
            await _run_io(request, writer.write, batch)
        if expected is not None and received != expected:
            raise _BodyIncomplete(f"body of {received} bytes, expected {expected}")
        info: ShardInfo = await _run_io(request, writer.commit)
        committed = True
        return info
    finally:
        request[_BYTES_IN] = received
        if not committed:
            await asyncio.shield(_abort_write(request, writer, pending))


async def _abort_write(
    request: web.Request, writer: ShardWriter, pending: asyncio.Future[None] | None
) -> None:
    if pending is not None:
        # Never close the file under a write still running in the executor.
        await asyncio.gather(pending, return_exceptions=True)
    await _run_io(request, writer.abort)


class _ShardFileResponse(web.FileResponse):
    """FileResponse whose prepare() may be called twice, as `_observe` finishes it early."""

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared:
            return None
        return await super().prepare(request)


async def get_shard(request: web.Request) -> web.StreamResponse:
    partition, shard = _shard_of(request)
    try:
        rng = request.http_range
    except ValueError:
        raise InvalidRange("malformed Range header") from None
    store = request.app[SHARD_STORE]
    found = await _run_io(
        request, store.read_range, partition, shard, rng.start, rng.stop, INLINE_READ_BYTES
    )
    ranged = rng.start is not None
    if found.start >= found.stop and (ranged or found.size):
        raise InvalidRange(f"range not satisfiable for a {found.size}-byte shard")
    if found.data is None:
        # Large: sendfile, Range (206/416) and all blocking calls off the loop; 404 if the
        # shard went away meanwhile.
        return _ShardFileResponse(
            Path(found.path),
            chunk_size=1 << 20,
            headers={"Content-Type": "application/octet-stream"},
        )
    # Small (a frame or a few): one trip to the executor read it already.
    resp = web.Response(body=found.data, status=206 if ranged else 200,
                        content_type="application/octet-stream")
    if ranged:
        resp.headers["Content-Range"] = f"bytes {found.start}-{found.stop - 1}/{found.size}"
    return resp


async def head_shard(request: web.Request) -> web.StreamResponse:
    partition, shard = _shard_of(request)
    info = await _run_io(request, request.app[SHARD_STORE].stat, partition, shard)
    resp = web.StreamResponse(
        headers={MTIME_HEADER: repr(info.mtime), "Content-Type": "application/octet-stream"}
    )
    resp.content_length = info.size
    return resp


async def delete_shard(request: web.Request) -> web.StreamResponse:
    partition, shard = _shard_of(request)
    if await _run_io(request, request.app[SHARD_STORE].delete, partition, shard):
        return web.Response(status=204)
    raise ShardNotFound(f"shard {shard.name} not in partition {partition}")


async def verify_shard(request: web.Request) -> web.StreamResponse:
    partition, shard = _shard_of(request)
    store, owner = request.app[SHARD_STORE], frame_owner(shard.object_id, shard.shard_tag)
    result = await _run_io(request, store.verify, partition, shard, owner)
    body = {"ok": result.ok, "frames": result.frames, "bad_stripes": list(result.bad_stripes)}
    return web.json_response(body)


async def delete_object(request: web.Request) -> web.StreamResponse:
    partition = validate_partition(request.match_info["partition"])
    object_id = validate_object_id(request.match_info["object_id"])
    tag = request.query.get("tag")
    if tag is not None:
        validate_shard_tag(tag)
    store = request.app[SHARD_STORE]
    count = await _run_io(request, store.delete_object, partition, object_id, tag)
    return web.json_response({"deleted": count})


async def list_partitions(request: web.Request) -> web.StreamResponse:
    partitions = await _run_io(request, request.app[SHARD_STORE].list_partitions)
    return web.json_response({"partitions": partitions})


async def list_partition(request: web.Request) -> web.StreamResponse:
    partition = validate_partition(request.match_info["partition"])
    infos = await _run_io(request, request.app[SHARD_STORE].list_partition, partition)
    rows = [[i.shard.name, i.size, i.mtime] for i in infos]
    return web.json_response({"partition": partition, "shards": rows},
                             dumps=lambda o: json.dumps(o, separators=(",", ":")))


async def usage(request: web.Request) -> web.StreamResponse:
    u = await _run_io(request, request.app[SHARD_STORE].usage)
    return web.json_response({"capacity_bytes": u.capacity_bytes, "used_bytes": u.used_bytes,
                              "free_bytes": u.free_bytes, "shards": u.shards,
                              "volume_id": u.volume_id})


async def healthz(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.StreamResponse:
    ready = request.app[POD_STATE].opened and await _run_io(
        request, request.app[SHARD_STORE].is_ready
    )
    return web.Response(text="ready\n" if ready else "not ready\n", status=200 if ready else 503)


async def metrics(request: web.Request) -> web.StreamResponse:
    store = request.app[SHARD_STORE]
    u = await _run_io(request, store.usage)
    body = request.app[POD_METRICS].render(u, store.packs.footprint())
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


# -- the application -------------------------------------------------------------------------


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    """Open the store (cleans tmp/, counts usage) before serving; drain the executor after."""
    executor = app[IO_EXECUTOR]
    await asyncio.get_running_loop().run_in_executor(executor, app[SHARD_STORE].open)
    app[POD_STATE].opened = True
    log.info("pod %s serving %s", app[POD_CONFIG].pod_id or "-", app[POD_CONFIG].data_dir)
    yield
    app[POD_STATE].opened = False
    executor.shutdown(wait=True)
    app[SHARD_STORE].close()


def build_pod_app(config: PodConfig) -> web.Application:
    """The pod service for `config`; its store opens when the app starts."""
    app = web.Application(
        middlewares=[_observe],
        # A request body is buffered up to one write batch before the socket is paused;
        # aiohttp's 64 KiB default pauses and resumes it ~30 times per MiB.
        handler_args={"read_bufsize": config.read_buffer_bytes},
    )
    app[POD_CONFIG] = config
    app[SHARD_STORE] = ShardStore(
        config.data_dir,
        capacity_bytes=config.capacity_bytes,
        max_shard_bytes=config.max_shard_bytes,
    )
    app[IO_EXECUTOR] = ThreadPoolExecutor(config.io_threads, thread_name_prefix="pod-io")
    app[POD_METRICS] = PodMetrics(config.pod_id)
    app[POD_STATE] = PodState()
    app.cleanup_ctx.append(_lifecycle)
    r = app.router
    r.add_put(_SHARD_ROUTE, put_shard, name="PutShard")
    r.add_get(_SHARD_ROUTE, get_shard, name="GetShard", allow_head=False)
    r.add_head(_SHARD_ROUTE, head_shard, name="HeadShard")
    r.add_delete(_SHARD_ROUTE, delete_shard, name="DeleteShard")
    r.add_post(_SHARD_ROUTE + "/verify", verify_shard, name="VerifyShard")
    r.add_delete("/v1/objects/{partition}/{object_id}", delete_object, name="DeleteObject")
    r.add_get("/v1/partitions", list_partitions, name="ListPartitions")
    r.add_get("/v1/partitions/{partition}", list_partition, name="ListPartition")
    r.add_get("/v1/usage", usage, name="Usage")
    r.add_get("/healthz", healthz, name="Healthz")
    r.add_get("/readyz", readyz, name="Readyz")
    r.add_get("/metrics", metrics, name="Metrics")
    return app
