"""The pod's lean HTTP/1.1 lane for its two hottest requests: shard PUT and shard GET.

Why not aiohttp's server for these: a pod answers one shard PUT per object written and one
ranged GET per object read, and aiohttp spends about half a millisecond of Python on each
(request object, router, middleware, payload stream, response object), as much as the disk
work of a 256 KiB shard. This lane parses the request head itself, receives a PUT body
straight into one buffer of its Content-Length (a BufferedProtocol: no per-read bytes
objects, no join) and answers from the same ShardStore, executor, auth check, error table
and metrics as the aiohttp app, so both paths behave alike.

What it takes: PUT of a shard with a Content-Length up to one write batch (the whole body,
then one trip to the I/O executor), and GET of a shard with no Range or one
`bytes=a-b | a- | -n` range (small reads in one executor trip, large ones with sendfile).
Anything else (streamed or chunked PUTs, Expect, other routes and methods, odd headers) is
handed to the aiohttp app on the same connection, at a request boundary, with the bytes
already received; the connection then stays with aiohttp.

Rules:
- Auth and name checks come before the body is read; a refused request is answered with
  `Connection: close`, and whatever body follows is dropped unread during a short
  lingering close.
- A PUT is written only once its whole body is here; a client that goes away before that
  leaves nothing on disk.
- One request at a time per connection: pipelined bytes wait for the answer before them
  (reading pauses only when more than a request head's worth is waiting).
- Idle connections close after `keepalive_s` (aiohttp's 75 s), as aiohttp's would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable, Coroutine
from typing import Any

from aiohttp import web

from kurastore.storage import server
from kurastore.storage._buffers import receive_buffer
from kurastore.storage._disk import ShardStore
from kurastore.storage._flow import WriteFlow
from kurastore.storage._metrics import PodMetrics
from kurastore.storage.api import AUTH_HEADER, ShardId, ShardInfo, validate_partition
from kurastore.storage.auth import AuthMissing, AuthRejected, check_request
from kurastore.storage.config import PodConfig
from kurastore.storage.errors import InvalidRange, PodError, ShardNotFound

__all__ = ["LaneServer", "PodListener"]

log = logging.getLogger("kurastore.storage")

_MAX_HEAD = 16 << 10
_SCRATCH = 64 << 10
_KEEPALIVE_S = 75.0
_SHARD_TARGET = re.compile(r"/v1/shards/([0-9]+)/([0-9a-zA-Z._-]+)", re.ASCII)
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.ASCII | re.IGNORECASE)
_REASONS = {
    200: "OK", 201: "Created", 206: "Partial Content", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
    413: "Payload Too Large", 416: "Range Not Satisfiable", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 507: "Insufficient Storage",
}
_OCTETS = "application/octet-stream"
_JSON = "application/json; charset=utf-8"
_HEAD, _BODY, _BUSY, _DRAIN, _GONE = range(5)
_LINGER_S = 2.0  # how long a refused request's unread body is taken and dropped


class _Refused(Exception):
    """Answer now with this status and JSON error, then close the connection."""

    def __init__(self, status: int, name: str, message: str) -> None:
        super().__init__(message)
        self.status, self.name = status, name


class _CutOff(Exception):
    """The client went away in the middle of an answer: close, nothing more to say."""


class _Request:
    __slots__ = ("bytes_in", "headers", "method", "partition", "shard", "start_s", "target")

    def __init__(self, method: str, target: str, headers: dict[str, str]) -> None:
        self.method, self.target, self.headers = method, target, headers
        self.partition = 0
        self.shard: ShardId | None = None
        self.start_s = time.perf_counter()
        self.bytes_in = 0


class LaneServer:
    """Protocol factory for the pod's listening socket: lane connections that hand what
    they do not take to `fallback` (aiohttp's `web.Server`, i.e. `AppRunner.server`)."""

    def __init__(self, app: web.Application, fallback: Callable[[], asyncio.Protocol],
                 *, keepalive_s: float = _KEEPALIVE_S) -> None:
        self.config: PodConfig = app[server.POD_CONFIG]
        self.store: ShardStore = app[server.SHARD_STORE]
        self.executor = app[server.IO_EXECUTOR]
        self.metrics: PodMetrics = app[server.POD_METRICS]
        self.status_of = server.STATUS_OF
        self.inline_read_bytes = server.INLINE_READ_BYTES
        self.fallback = fallback
        self.keepalive_s = keepalive_s
        self.connections: set[_LaneConnection] = set()
        self.closing = False
        self._none_left = asyncio.Event()

    def forget(self, conn: _LaneConnection) -> None:
        self.connections.discard(conn)
        if not self.connections:
            self._none_left.set()

    def __call__(self) -> asyncio.BaseProtocol:
        return _LaneConnection(self)

    async def shutdown(self, timeout_s: float) -> None:
        """Close idle connections now; give busy ones `timeout_s` to finish, then cut them."""
        self.closing = True
        for conn in list(self.connections):
            conn.close_if_idle()
        if self.connections:
            self._none_left.clear()
            try:
                async with asyncio.timeout(timeout_s):
                    await self._none_left.wait()
            except TimeoutError:
                pass
        for conn in list(self.connections):
            conn.abort()


class PodListener:
    """The pod app on a listening socket, behind the lane: `start`, then `stop`."""

    def __init__(self, app: web.Application, host: str, port: int,
                 shutdown_timeout_s: float = 10.0) -> None:
        self.app, self.host, self.port = app, host, port
        self.shutdown_timeout_s = shutdown_timeout_s
        self._runner: web.AppRunner | None = None
        self._lane: LaneServer | None = None
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Run the app's startup hooks (the store opens), then listen; return the port."""
        self._runner = web.AppRunner(self.app, access_log=None,
                                     shutdown_timeout=self.shutdown_timeout_s)
        await self._runner.setup()
        assert self._runner.server is not None
        self._lane = LaneServer(self.app, self._runner.server)
        self._server = await asyncio.get_running_loop().create_server(
            self._lane, self.host, self.port, reuse_address=True, backlog=1024)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Stop listening, let requests in flight finish, then run the cleanup hooks."""
        if self._server is not None:
            self._server.close()
        if self._lane is not None:
            await self._lane.shutdown(self.shutdown_timeout_s)
        if self._runner is not None:
            await self._runner.cleanup()
        self._server = self._lane = self._runner = None


class _LaneConnection(WriteFlow, asyncio.BufferedProtocol):
    def __init__(self, server: LaneServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.state = _HEAD
        self._scratch = bytearray(_SCRATCH)
        self._pending = bytearray()  # received, not yet taken: a head, pipelined requests
        self._body = memoryview(b"")
        self._got = 0
        self._request: _Request | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._can_write: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._remote: str | None = None
        self._paused = False
        self._close_after = False  # the request asked for `Connection: close`

    # -- asyncio.BufferedProtocol ----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self._remote = peer[0] if isinstance(peer, tuple) else None
        self.server.connections.add(self)
        self._arm_idle_timer()

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.state == _BODY:
            return self._body[self._got :]
        return memoryview(self._scratch)

    def buffer_updated(self, nbytes: int) -> None:
        if self.state == _BODY:
            self._got += nbytes
            if self._got == len(self._body):
                self._start(self._put())
            return
        if self.state == _DRAIN:
            return  # the unread body of a refused request: dropped
        self._pending += memoryview(self._scratch)[:nbytes]
        if self.state == _HEAD:
            self._next_request()
        elif len(self._pending) > _MAX_HEAD and self.transport is not None:
            self._paused = True  # _BUSY: pipelined bytes wait for the answer before them
            self.transport.pause_reading()

    def eof_received(self) -> bool | None:
        return None  # close; connection_lost tidies up

    def connection_lost(self, exc: Exception | None) -> None:
        if self.state == _BODY and self._request is not None:
            log.info("PUT %s cut off after %d bytes", self._request.target, self._got)
            self._observe(self._request, "PutShard", 499, 0)
        if self.state == _BODY:
            self._release_body()
        self.state = _GONE
        self.server.forget(self)
        self._cancel_idle_timer()
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_exception(ConnectionResetError("client went away"))
            self._can_write.exception()
        if self._task is not None and not self._task.done():
            self._task.cancel()  # a write already in the executor still completes there

    # -- lifecycle -------------------------------------------------------------------------
    def close_if_idle(self) -> None:
        """Close unless a request is being received or handled. A head still incomplete
        counts as idle: a client that sends part of one and stops is dropped too."""
        if self.state == _HEAD and self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def _arm_idle_timer(self) -> None:
        self._cancel_idle_timer()
        loop = asyncio.get_running_loop()
        self._idle_timer = loop.call_later(self.server.keepalive_s, self.close_if_idle)

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _start(self, coro: Any) -> None:
        # Reading goes on (pausing costs two epoll calls per request): what a pipelining
        # client sends meanwhile waits in _pending, and only a lot of it pauses the socket.
        self.state = _BUSY
        self._task = asyncio.get_running_loop().create_task(coro)

    def _done(self, close: bool) -> None:
        """The answer is written: take the next request, or close."""
        self._request, self._got, self._task = None, 0, None
        self._release_body()
        if self.state == _GONE or self.transport is None:
            return
        if close or self._close_after or self.server.closing:
            self.state = _GONE
            self.transport.close()
            return
        self.state = _HEAD
        if self._paused:
            self._paused = False
            self.transport.resume_reading()
        self._arm_idle_timer()
        if self._pending:
            self._next_request()

    # -- requests --------------------------------------------------------------------------
    def _next_request(self) -> None:
        end = self._pending.find(b"\r\n\r\n")
        if end < 0:
            if len(self._pending) > _MAX_HEAD:
                self._refuse_now(_Refused(431, "BadRequest", "request head too large"))
            return
        parsed = _parse_head(bytes(self._pending[:end]))
        lane = None if parsed is None else _lane_of(parsed, self.server.config)
        if parsed is None or lane is None:
            self._hand_off()
            return
        del self._pending[: end + 4]
        self._cancel_idle_timer()
        request = self._request = parsed
        self._close_after = request.headers.get("connection", "").lower() == "close"
        try:
            self._check(request)
        except _Refused as refusal:
            self._refuse_now(refusal, request)
            return
        if lane == "GET":
            self._start(self._get(request))
            return
        length = int(request.headers.get("content-length", "0"))
        self._body = memoryview(receive_buffer(length))  # filled before it is used
        early = min(length, len(self._pending))
        self._body[:early] = self._pending[:early]
        del self._pending[:early]
        self._got = early
        if early == length:
            self._start(self._put())
        else:
            self.state = _BODY

    def _release_body(self) -> None:
        self._body = memoryview(b"")

    def _check(self, request: _Request) -> None:
        """Auth, then names: both before any body byte is taken."""
        config = self.server.config
        try:
            check_request(config.secret, request.headers.get(AUTH_HEADER.lower()),
                          request.method, request.target, max_skew_s=config.max_clock_skew_s)
        except AuthMissing as exc:
            log.warning("refused %s %s: %s", request.method, request.target, exc)
            raise _Refused(401, "PodAuthError", str(exc)) from None
        except AuthRejected as exc:
            log.warning("refused %s %s: %s", request.method, request.target, exc)
            raise _Refused(403, "PodAuthError", str(exc)) from None
        match = _SHARD_TARGET.fullmatch(request.target)
        assert match is not None  # _lane_of checked the shape
        try:
            request.partition = validate_partition(match.group(1))
            request.shard = ShardId.parse(match.group(2))
        except PodError as exc:
            raise _Refused(*self._status_of(exc), str(exc)) from None
        if request.method == "PUT":
            length = int(request.headers["content-length"])
            if length > config.max_shard_bytes:
                raise _Refused(413, "ShardTooLarge",
                               f"shard larger than {config.max_shard_bytes} bytes")

    def _hand_off(self) -> None:
        """Give the connection, and every byte not yet taken, to aiohttp's server."""
        transport = self.transport
        assert transport is not None
        self.state = _GONE
        self._cancel_idle_timer()
        self.server.forget(self)
        protocol = self.server.fallback()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        pending, self._pending = bytes(self._pending), bytearray()
        if pending:
            protocol.data_received(pending)

    def _refuse_now(self, refusal: _Refused, request: _Request | None = None) -> None:
        """Answer, then close. When a body may still be coming, the close lingers: our
        side is shut for writing and what arrives is dropped for `_LINGER_S`, since closing
        with unread bytes makes the kernel send a reset that can destroy the answer
        before the client reads it."""
        self._write(refusal.status, _error_body(refusal.name, str(refusal)), _JSON, close=True)
        if request is not None:
            self._observe(request, _op_of(request), refusal.status, 0)
        self._pending.clear()
        transport = self.transport
        if transport is None or transport.is_closing():
            self.state = _GONE
            return
        if request is None or request.headers.get("content-length", "0") == "0":
            self.state = _GONE
            transport.close()
            return
        self.state = _DRAIN
        transport.write_eof()
        self._cancel_idle_timer()
        self._idle_timer = asyncio.get_running_loop().call_later(_LINGER_S, transport.close)

    async def _put(self) -> None:
        request = self._request
        assert request is not None
        request.bytes_in = len(self._body)
        await self._answer(request, "PutShard", self._store_body(request, self._body))

    async def _get(self, request: _Request) -> None:
        await self._answer(request, "GetShard", self._serve_range(request))

    async def _answer(
        self, request: _Request, op: str, work: Coroutine[Any, Any, tuple[int, int]]
    ) -> None:
        """Run `work` (it writes the answer and returns its status and body size), answer
        its errors the aiohttp app's way, count the request, then go on to the next."""
        status, sent, close = 500, 0, False
        try:
            status, sent = await work
        except PodError as exc:
            status, name = self._status_of(exc)
            self._write(status, _error_body(name, str(exc)), _JSON)
        except asyncio.CancelledError:
            status = 499
            raise
        except _CutOff as exc:
            status, close = 499, True
            log.info("%s %s cut off: %s", request.method, request.target, exc)
        except Exception:
            log.exception("internal error on %s %s", request.method, request.target)
            status, close = 500, True
            self._write(500, _error_body("InternalError", "internal error"), _JSON, close=True)
        finally:
            self._observe(request, op, status, sent)
        await self._drain_then_next(close)

    async def _store_body(self, request: _Request, body: memoryview) -> tuple[int, int]:
        assert request.shard is not None
        # If the client goes away meanwhile, the write still completes in the executor
        # (it holds its own reference to the body); the shard is then an orphan that the
        # gateway's collector removes, as with any PUT it did not acknowledge.
        info: ShardInfo = await asyncio.get_running_loop().run_in_executor(
            self.server.executor, self.server.store.write_whole,
            request.partition, request.shard, body)
        answer = {"partition": info.partition, "name": info.shard.name,
                  "size": info.size, "mtime": info.mtime}
        self._write(201, json.dumps(answer).encode(), _JSON)
        return 201, 0

    async def _serve_range(self, request: _Request) -> tuple[int, int]:
        assert request.shard is not None
        start, stop = _range_of(request.headers.get("range"))
        loop = asyncio.get_running_loop()
        store = self.server.store
        found = await loop.run_in_executor(
            self.server.executor, store.read_range, request.partition, request.shard,
            start, stop, self.server.inline_read_bytes)
        ranged = start is not None
        if found.start >= found.stop and (ranged or found.size):
            raise InvalidRange(f"range not satisfiable for a {found.size}-byte shard")
        status = 206 if ranged else 200
        extra = (f"Content-Range: bytes {found.start}-{found.stop - 1}/{found.size}\r\n"
                 if ranged else "")
        if found.data is not None:
            self._write(status, found.data, _OCTETS, extra)
            return status, len(found.data)
        path = store.shard_file(request.partition, request.shard)
        try:
            file = await loop.run_in_executor(self.server.executor, open, path, "rb")
        except FileNotFoundError:
            raise ShardNotFound(f"shard {request.shard.name} went away") from None
        try:
            count = found.stop - found.start
            self._write(status, b"", _OCTETS, extra, length=count)
            assert self.transport is not None
            try:
                await loop.sendfile(self.transport, file, found.start, count)
            except (ConnectionError, RuntimeError) as exc:  # RuntimeError: transport closing
                raise _CutOff(str(exc)) from exc
        finally:
            file.close()
        return status, count

    async def _drain_then_next(self, close: bool) -> None:
        try:
            if self._can_write is not None and not self._can_write.done():
                await self._can_write
        except ConnectionError:
            return
        self._done(close)

    def _status_of(self, exc: PodError) -> tuple[int, str]:
        for cls in type(exc).__mro__:
            if cls in self.server.status_of:
                return self.server.status_of[cls], type(exc).__name__
        return 500, "InternalError"

    def _write(self, status: int, body: bytes | bytearray, content_type: str, extra: str = "",
               *, close: bool = False, length: int | None = None) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if close or self._close_after:
            extra += "Connection: close\r\n"
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
                f"Content-Type: {content_type}\r\n"
                f"Content-Length: {len(body) if length is None else length}\r\n{extra}\r\n"
                ).encode()
        if len(body) <= 4096:
            self.transport.write(head + body)
        else:
            # Two writes, not writelines: on Python 3.11 writelines joins (copies) the body;
            # a write to an idle socket goes straight to send().
            self.transport.write(head)
            self.transport.write(body)

    def _observe(self, request: _Request, op: str, status: int, bytes_out: int) -> None:
        self.server.metrics.observe(
            op=op, method=request.method, path=request.target, status=status,
            bytes_in=request.bytes_in, bytes_out=bytes_out,
            duration_s=time.perf_counter() - request.start_s,
            remote=self._remote,
            request_id=request.headers.get("x-request-id"),
        )


def _parse_head(head: bytes) -> _Request | None:
    """The request line and headers; None for anything this lane does not read itself."""
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return None
    lines = text.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] != "HTTP/1.1":
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        key = name.lower()
        if not sep or key != name.strip().lower() or key in headers:
            return None  # folded, odd or repeated header: let aiohttp judge it
        headers[key] = value.strip()
    return _Request(parts[0], parts[1], headers)


def _lane_of(request: _Request, config: PodConfig) -> str | None:
    """"PUT" or "GET" when this lane serves the request, None to hand it to aiohttp."""
    headers = request.headers
    if (not _SHARD_TARGET.fullmatch(request.target) or "transfer-encoding" in headers
            or "expect" in headers or "upgrade" in headers):
        return None
    if request.method == "PUT":
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) <= config.write_batch_bytes:
            return "PUT"
        return None
    if request.method == "GET" and headers.get("content-length", "0") == "0":
        rng = headers.get("range")
        if rng is None or _RANGE.fullmatch(rng):
            return "GET"
    return None


def _range_of(header: str | None) -> tuple[int | None, int | None]:
    """(start, stop) as aiohttp's `Request.http_range` gives them: stop exclusive,
    a negative start for a suffix range. InvalidRange for a range that says nothing or
    ends before it starts."""
    if header is None:
        return None, None
    match = _RANGE.fullmatch(header)
    assert match is not None  # _lane_of checked the form
    first, last = match.group(1), match.group(2)
    if not first and not last:
        raise InvalidRange("malformed Range header")
    if not first:
        return -int(last), None
    if not last:
        return int(first), None
    if int(first) > int(last):
        raise InvalidRange("malformed Range header")
    return int(first), int(last) + 1


def _op_of(request: _Request) -> str:
    return "PutShard" if request.method == "PUT" else "GetShard"


def _error_body(name: str, message: str) -> bytes:
    return json.dumps({"error": name, "message": message}).encode()
