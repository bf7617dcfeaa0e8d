"""The pod's thread lane for shard PUT and shard GET: one thread per connection, blocking
socket calls, the disk work done in that same thread. It serves what the event-loop lane
(_evlane.py) passes it: shards kept as files (larger than a pack takes), streamed bodies,
refusals; the helpers both lanes share live here too.

Why not aiohttp here: a pod answers one shard PUT per object written and one
ranged GET per object read. aiohttp spends about half a millisecond of Python on each
(request object, router, middleware, payload stream, response object); an asyncio
protocol still pays a loop wake-up per socket read, a task, and a hop to the I/O executor
and back for the disk call. A thread that blocks in recv, writes the shard and answers
with one sendmsg does none of that (measured, 256 KiB shards, 8 concurrent clients, the
gateway's own wire client: 0.18 against 0.43 ms of pod CPU per GET, 0.7 against 0.9 ms
per PUT). Blocking calls release the GIL, so threads of one pod overlap on the disk. (The
event-loop lane avoids the asyncio costs another way: bare reader callbacks, no tasks,
and no executor hop.)

What it takes: PUT of a shard with a Content-Length (up to one write batch: the whole
body, then one ShardStore call; larger: a batch at a time into a ShardWriter), and GET of
a shard with no Range or one `bytes=a-b | a- | -n` range (small reads answered from
memory, large ones with sendfile). Anything else (chunked PUTs, Expect, other routes and
methods, odd headers) is handed to the aiohttp app on the event loop, on the same
connection, at a request boundary, with the bytes already received; the connection then
stays with aiohttp. Connections passed on beyond `max_threads` go to aiohttp at once.

Rules:
- Auth and name checks come before the body is read; a refused request is answered with
  `Connection: close`, and whatever body follows is dropped unread during a short
  lingering close.
- A PUT is written only once its whole body is here; a client that goes away (or stalls
  longer than the keep-alive time) before that leaves nothing on disk.
- One request at a time per connection: pipelined requests are answered in order.
- Idle connections close after `keepalive_s` (aiohttp's 75 s), as aiohttp's would.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import struct
import threading
import time
from collections.abc import Callable

from aiohttp import web

from kurastore.storage import server
from kurastore.storage._buffers import receive_buffer
from kurastore.storage._disk import ShardStore
from kurastore.storage._metrics import PodMetrics
from kurastore.storage.api import AUTH_HEADER, ShardId, ShardInfo, validate_partition
from kurastore.storage.auth import AuthMissing, AuthRejected, check_request
from kurastore.storage.config import PodConfig
from kurastore.storage.errors import InvalidRange, PodError, ShardNotFound

__all__ = ["LaneServer"]

log = logging.getLogger("kurastore.storage")

MAX_HEAD_BYTES = 16 << 10
SCRATCH_BYTES = 64 << 10
_KEEPALIVE_S = 75.0
_MAX_THREADS = 512
_SHARD_TARGET = re.compile(r"/v1/shards/([0-9]+)/([0-9a-zA-Z._-]+)", re.ASCII)
_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.ASCII | re.IGNORECASE)
_REASONS = {
    200: "OK", 201: "Created", 206: "Partial Content", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 409: "Conflict",
    413: "Payload Too Large", 416: "Range Not Satisfiable", 431: "Request Header Fields Too Large",
    500: "Internal Server Error", 507: "Insufficient Storage",
}
OCTETS_TYPE = "application/octet-stream"
JSON_TYPE = "application/json; charset=utf-8"
_LINGER_S = 2.0  # how long a refused request's unread body is taken and dropped


class _Refused(Exception):
    """Answer now with this status and JSON error, then close the connection."""

    def __init__(self, status: int, name: str, message: str) -> None:
        super().__init__(message)
        self.status, self.name = status, name


class _CutOff(Exception):
    """The client went away (or stalled past the time allowed): close, nothing more to say."""


class Request:
    __slots__ = ("bytes_in", "headers", "method", "partition", "shard", "start_s", "target")

    def __init__(self, method: str, target: str, headers: dict[str, str]) -> None:
        self.method, self.target, self.headers = method, target, headers
        self.partition = 0
        self.shard: ShardId | None = None
        self.start_s = time.perf_counter()
        self.bytes_in = 0


class LaneServer:
    """The lane's shared state: the pod's store, config and metrics, the aiohttp server
    (`fallback`, i.e. `AppRunner.server`) that takes what the lane does not, and the
    connections being served, each by its own thread."""

    def __init__(self, app: web.Application, fallback: Callable[[], asyncio.Protocol],
                 loop: asyncio.AbstractEventLoop, *, keepalive_s: float = _KEEPALIVE_S,
                 max_threads: int = _MAX_THREADS) -> None:
        self.config: PodConfig = app[server.POD_CONFIG]
        self.store: ShardStore = app[server.SHARD_STORE]
        self.metrics: PodMetrics = app[server.POD_METRICS]
        self.inline_read_bytes = server.INLINE_READ_BYTES
        self.fallback = fallback
        self.loop = loop
        self.keepalive_s = keepalive_s
        self.max_threads = max_threads
        self.closing = False
        self._lock = threading.Lock()
        self._connections: set[_LaneConnection] = set()
        self._adopting: set[asyncio.Task[object]] = set()

    def adopt(self, sock: socket.socket, remote: str | None, pending: bytes = b"") -> None:
        """Serve `sock` (blocking), whose peer already sent `pending`, on a thread of its
        own; past `max_threads` connections aiohttp takes it, and when closing it is
        closed."""
        conn = _LaneConnection(self, sock, remote, pending)
        with self._lock:
            refused = self.closing
            crowded = len(self._connections) >= self.max_threads
            if not refused and not crowded:
                self._connections.add(conn)
        if refused:
            sock.close()
        elif crowded:
            self.hand_off(sock, pending)
        else:
            threading.Thread(target=conn.run, name="pod-lane", daemon=True).start()

    def forget(self, conn: _LaneConnection) -> None:
        with self._lock:
            self._connections.discard(conn)

    def hand_off(self, sock: socket.socket, pending: bytes) -> None:
        """Give `sock`, and the bytes already read from it, to aiohttp on the event loop."""
        sock.setblocking(False)
        try:
            self.loop.call_soon_threadsafe(self._adopt, sock, pending)
        except RuntimeError:  # the loop is closed: the pod is stopping
            sock.close()

    def _adopt(self, sock: socket.socket, pending: bytes) -> None:
        async def adopt() -> None:
            try:
                await self.loop.connect_accepted_socket(
                    lambda: _HandedOff(self.fallback(), pending), sock)
            except OSError:
                sock.close()

        task = self.loop.create_task(adopt())
        self._adopting.add(task)
        task.add_done_callback(self._adopting.discard)

    async def shutdown(self, timeout_s: float) -> None:
        """Close idle connections now; give busy ones `timeout_s` to finish, then cut them."""
        with self._lock:
            self.closing = True
            connections = list(self._connections)
        for conn in connections:
            conn.close_if_idle()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not self._connections:
                    break
            await asyncio.sleep(0.02)
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            conn.cut()
        if self._adopting:
            await asyncio.gather(*self._adopting, return_exceptions=True)


class _HandedOff(asyncio.Protocol):
    """Puts aiohttp's protocol on a transport made for a socket the lane read from, and
    feeds it those bytes first (before the transport reads anything more)."""

    def __init__(self, inner: asyncio.Protocol, pending: bytes) -> None:
        self.inner, self.pending = inner, pending

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.set_protocol(self.inner)
        self.inner.connection_made(transport)
        if self.pending:
            self.inner.data_received(self.pending)

    def connection_lost(self, exc: Exception | None) -> None:
        self.inner.connection_lost(exc)


def _timeval(seconds: float) -> bytes:
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1e6))


class _LaneConnection:
    """One client connection, served by its own thread (`run`)."""

    def __init__(self, lane: LaneServer, sock: socket.socket, remote: str | None,
                 pending: bytes = b"") -> None:
        self.lane = lane
        self.sock = sock
        self.remote = remote
        self._scratch = bytearray(SCRATCH_BYTES)
        # Received, not yet taken: a head, pipelined requests.
        self._pending = bytearray(pending)
        self._lock = threading.Lock()
        self._busy = False  # a request (its whole head read) is being answered
        self._handed_off = False

    # -- lifecycle -------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Kernel timeouts on the blocking socket: a silent or stalled peer ends the
            # connection (EAGAIN) instead of holding this thread, with no poll per call.
            wait = _timeval(self.lane.keepalive_s)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, wait)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, wait)
            while self._serve_one():
                pass
        except (OSError, _CutOff):
            pass  # the peer went away, or shutdown cut the socket
        except Exception:
            log.exception("lane connection from %s failed", self.remote)
        finally:
            self.lane.forget(self)
            if not self._handed_off:
                self.sock.close()

    def close_if_idle(self) -> None:
        """Close unless a request is being answered. A head still incomplete counts as
        idle: a client that sends part of one and stops is dropped too."""
        with self._lock:
            if not self._busy:
                self._shut()

    def cut(self) -> None:
        self._shut()

    def _shut(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # the blocked recv returns at once
        except OSError:
            pass

    # -- requests --------------------------------------------------------------------------
    def _serve_one(self) -> bool:
        """Read, check and answer one request; False when the connection is done."""
        head = self._read_head()
        if head is None:
            return False
        parsed = parse_head(head)
        lane_op = None if parsed is None else lane_of(parsed, self.lane.config)
        if parsed is None or lane_op is None:
            self._handed_off = True
            self.lane.hand_off(self.sock, head + b"\r\n\r\n" + bytes(self._pending))
            return False
        with self._lock:
            if self.lane.closing:
                return False
            self._busy = True
        request = parsed
        close_after = request.headers.get("connection", "").lower() == "close"
        try:
            self._check(request)
        except _Refused as refused:
            self._refuse(refused, request)
            return False
        try:
            ok = self._answer(request, lane_op, close_after)
        finally:
            with self._lock:
                self._busy = False
        return ok and not close_after and not self.lane.closing

    def _read_head(self) -> bytes | None:
        """The next request head (without its blank line), or None when the connection
        ended, stayed silent for the keep-alive time, or sent a head too large (431)."""
        deadline = time.monotonic() + self.lane.keepalive_s
        while True:
            end = self._pending.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self._pending[:end])
                del self._pending[: end + 4]
                return head
            if len(self._pending) > MAX_HEAD_BYTES:
                self._refuse(_Refused(431, "BadRequest", "request head too large"))
                return None
            if time.monotonic() >= deadline or self.lane.closing:
                return None
            n = self.sock.recv_into(self._scratch)  # EAGAIN (OSError) after keepalive_s
            if n == 0:
                return None
            self._pending += memoryview(self._scratch)[:n]

    def _check(self, request: Request) -> None:
        """Auth, then names: both before any body byte is taken."""
        refused = refusal(request, self.lane.config)
        if refused is not None:
            if refused.name == "PodAuthError":
                log.warning("refused %s %s: %s", request.method, request.target, refused)
            raise refused

    def _answer(self, request: Request, lane_op: str, close_after: bool) -> bool:
        """Do the request, answer it (or its error the aiohttp app's way), count it.
        False when the connection must close."""
        status, sent, keep = 500, 0, True
        try:
            if lane_op == "PUT":
                status = self._put(request, close_after)
            else:
                status, sent = self._get(request, close_after)
        except PodError as exc:
            status, name = status_and_name(exc)
            if request.method == "PUT" and request.bytes_in < _length_of(request):
                # Refused before its whole body was taken (an existing shard, a full
                # disk): what is still coming cannot be told from a next request.
                self._send_then_linger(status, name, str(exc))
                keep = False
            else:
                keep = self._send_error(status, name, str(exc), close_after)
        except _CutOff as exc:
            status, keep = 499, False
            log.info("%s %s cut off: %s", request.method, request.target, exc)
        except Exception:  # a disk error (EIO, ...) or a bug: the aiohttp app's 500
            log.exception("internal error on %s %s", request.method, request.target)
            status, keep = 500, False
            self._send_error(500, "InternalError", "internal error", True)
        finally:
            self._observe(request, status, sent)
        return keep

    def _put(self, request: Request, close_after: bool) -> int:
        assert request.shard is not None
        length = int(request.headers.get("content-length", "0"))
        store = self.lane.store
        if length <= self.lane.config.write_batch_bytes:
            body = memoryview(receive_buffer(length))  # filled before it is used
            self._receive(body, 0, length)
            request.bytes_in = length
            info = store.write_whole(request.partition, request.shard, body)
        else:
            info = self._put_streamed(request, length)
        answer = {"partition": info.partition, "name": info.shard.name,
                  "size": info.size, "mtime": info.mtime}
        self._send(201, json.dumps(answer).encode(), JSON_TYPE, close=close_after)
        return 201

    def _put_streamed(self, request: Request, length: int) -> ShardInfo:
        """A body larger than one write batch: received a batch at a time into one
        buffer and appended to a new shard (ShardExists before any byte is read); the
        partial shard is dropped if the body does not all arrive."""
        assert request.shard is not None
        writer = self.lane.store.begin_write(request.partition, request.shard, length)
        try:
            batch = memoryview(receive_buffer(self.lane.config.write_batch_bytes))
            got = 0
            while got < length:
                n = min(len(batch), length - got)
                self._receive(batch, got, length)
                writer.write([batch[:n]])
                got += n
                request.bytes_in = got
            info = writer.commit()
        except BaseException:
            writer.abort()
            raise
        return info

    def _receive(self, into: memoryview, done: int, length: int) -> None:
        """Fill `into` (or the part of it the body has left, `done` of `length` bytes
        taken so far) from what is pending, then from the socket."""
        want = min(len(into), length - done)
        got = min(want, len(self._pending))
        into[:got] = self._pending[:got]
        del self._pending[:got]
        while got < want:
            try:
                n = self.sock.recv_into(into[got:want])  # EAGAIN when the peer stalls
            except OSError as exc:
                raise _CutOff(f"after {done + got} of {length} bytes: {exc}") from exc
            if n == 0:
                raise _CutOff(f"after {done + got} of {length} bytes")
            got += n

    def _get(self, request: Request, close_after: bool) -> tuple[int, int]:
        assert request.shard is not None
        start, stop = range_of(request.headers.get("range"))
        store = self.lane.store
        found = store.read_range(request.partition, request.shard, start, stop,
                                 self.lane.inline_read_bytes, lend=True)
        try:
            ranged = start is not None
            if found.start >= found.stop and (ranged or found.size):
                raise InvalidRange(f"range not satisfiable for a {found.size}-byte shard")
            status = 206 if ranged else 200
            extra = (f"Content-Range: bytes {found.start}-{found.stop - 1}/{found.size}\r\n"
                     if ranged else "")
            if found.data is not None:
                # A blocking send: the bytes are the kernel's when it returns.
                self._send(status, found.data, OCTETS_TYPE, extra, close=close_after)
                return status, len(found.data)
        finally:
            found.release()
        try:
            file = open(found.path, "rb")
        except FileNotFoundError:
            raise ShardNotFound(f"shard {request.shard.name} went away") from None
        with file:
            count = found.stop - found.start
            self._send(status, b"", OCTETS_TYPE, extra, close=close_after, length=count)
            try:
                if store.send_range(file, found.path, found.start, count, self.sock.sendall):
                    return status, count
                sent = self.sock.sendfile(file, found.start, count)
            except ShardNotFound:
                raise _CutOff("the shard shrank while it was sent") from None
            except OSError as exc:
                raise _CutOff(str(exc)) from exc
            if sent != count:
                raise _CutOff("the shard shrank while it was sent")
        return status, count

    def _refuse(self, refused: _Refused, request: Request | None = None) -> None:
        """Answer, then close. When a body may still be coming, the close lingers: our
        side is shut for writing and what arrives is dropped for `_LINGER_S`, since closing
        with unread bytes makes the kernel send a reset that can destroy the answer
        before the client reads it."""
        if request is not None:
            self._observe(request, refused.status, 0)
        if request is None or _length_of(request) == 0:
            self._send_error(refused.status, refused.name, str(refused), True)
            return
        self._send_then_linger(refused.status, refused.name, str(refused))

    def _send_then_linger(self, status: int, name: str, message: str) -> None:
        """Answer with `Connection: close`, then drop what the peer still sends (see
        _refuse) until it closes or `_LINGER_S` has passed."""
        if not self._send_error(status, name, message, True):
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            return
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, _timeval(0.2))
        deadline = time.monotonic() + _LINGER_S
        while time.monotonic() < deadline:
            try:
                if self.sock.recv_into(self._scratch) == 0:
                    return
            except BlockingIOError:
                continue  # nothing arrived for a while: look at the deadline again
            except OSError:
                return

    def _send(self, status: int, body: bytes | bytearray | memoryview, content_type: str,
              extra: str = "", *, close: bool = False, length: int | None = None) -> None:
        head = answer_head(status, content_type, len(body) if length is None else length,
                           extra, close)
        try:
            if not body:
                self.sock.sendall(head)
                return
            # Head and body in one system call, without joining (copying) them.
            sent = self.sock.sendmsg([head, body])
            if sent < len(head):
                self.sock.sendall(head[sent:])
                sent = len(head)
            if sent - len(head) < len(body):
                self.sock.sendall(memoryview(body)[sent - len(head):])
        except OSError as exc:  # EAGAIN when the peer stops reading, EPIPE, resets
            raise _CutOff(str(exc)) from exc

    def _send_error(self, status: int, name: str, message: str, close: bool) -> bool:
        """Answer with a JSON error; False if the peer could not be told."""
        try:
            self._send(status, error_body(name, message), JSON_TYPE, close=close)
        except _CutOff:
            return False
        return True

    def _observe(self, request: Request, status: int, bytes_out: int) -> None:
        observe(self.lane, request, status, bytes_out, self.remote)


def parse_head(head: bytes) -> Request | None:
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
    return Request(parts[0], parts[1], headers)


def refusal(request: Request, config: PodConfig) -> _Refused | None:
    """Why `request` (a lane request) is refused, or None; sets its partition and shard.
    Auth first, then names and size: all before any body byte is taken."""
    try:
        check_request(config.secret, request.headers.get(AUTH_HEADER.lower()),
                      request.method, request.target, max_skew_s=config.max_clock_skew_s)
    except AuthMissing as exc:
        return _Refused(401, "PodAuthError", str(exc))
    except AuthRejected as exc:
        return _Refused(403, "PodAuthError", str(exc))
    match = _SHARD_TARGET.fullmatch(request.target)
    assert match is not None  # lane_of checked the shape
    try:
        request.partition = validate_partition(match.group(1))
        request.shard = ShardId.parse(match.group(2))
    except PodError as exc:
        return _Refused(*status_and_name(exc), str(exc))
    if request.method == "PUT":
        length = int(request.headers["content-length"])
        if length > config.max_shard_bytes:
            return _Refused(413, "ShardTooLarge",
                            f"shard larger than {config.max_shard_bytes} bytes")
    return None


def status_and_name(exc: PodError) -> tuple[int, str]:
    """The HTTP status and error name the aiohttp app would answer `exc` with."""
    status = server.status_of(exc)
    return (500, "InternalError") if status is None else (status, type(exc).__name__)


def answer_head(status: int, content_type: str, length: int, extra: str = "",
                close: bool = False) -> bytes:
    """An answer's status line and headers, with the blank line."""
    if close:
        extra += "Connection: close\r\n"
    return (f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n{extra}\r\n"
            ).encode()


def observe(lane: LaneServer, request: Request, status: int, bytes_out: int,
            remote: str | None) -> None:
    """Count one finished request and log it (PodMetrics.observe)."""
    lane.metrics.observe(
        op=_op_of(request), method=request.method, path=request.target, status=status,
        bytes_in=request.bytes_in, bytes_out=bytes_out,
        duration_s=time.perf_counter() - request.start_s, remote=remote,
        request_id=request.headers.get("x-request-id"),
    )


def lane_of(request: Request, config: PodConfig) -> str | None:
    """"PUT" or "GET" when this lane serves the request, None to hand it to aiohttp."""
    headers = request.headers
    if (not _SHARD_TARGET.fullmatch(request.target) or "transfer-encoding" in headers
            or "expect" in headers or "upgrade" in headers):
        return None
    if request.method == "PUT":
        return "PUT" if headers.get("content-length", "").isdigit() else None
    if request.method == "GET" and headers.get("content-length", "0") == "0":
        rng = headers.get("range")
        if rng is None or _RANGE.fullmatch(rng):
            return "GET"
    return None


def range_of(header: str | None) -> tuple[int | None, int | None]:
    """(start, stop) as aiohttp's `Request.http_range` gives them: stop exclusive,
    a negative start for a suffix range. InvalidRange for a range that says nothing or
    ends before it starts."""
    if header is None:
        return None, None
    match = _RANGE.fullmatch(header)
    assert match is not None  # lane_of checked the form
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


def _length_of(request: Request) -> int:
    length = request.headers.get("content-length", "0")
    return int(length) if length.isdigit() else 0


def _op_of(request: Request) -> str:
    return "PutShard" if request.method == "PUT" else "GetShard"


def error_body(name: str, message: str) -> bytes:
    return json.dumps({"error": name, "message": message}).encode()
