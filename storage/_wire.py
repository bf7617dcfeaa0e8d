"""A lean HTTP/1.1 client for the hottest pod calls: shard PUT and ranged shard GET.

Why not aiohttp here: a gateway sends k+m shard PUTs per object, and aiohttp's client
spends ~0.5 ms of Python per request (session, tracing, cookie jar, timers re-armed on
every read) which, for a 1 MiB object, cost more than its MD5; reads fetch k ranges per
object in the same way. The pod answers these on its own lean lane (_lane.py), and any
HTTP/1.1 server would do: this speaks plain HTTP/1.1, a request line, headers, a body
with Content-Length (or chunked when the length is unknown), and a response with
Content-Length, on pooled keep-alive connections.

Rules:
- A connection goes back to the pool only after a complete request and a complete
  response that did not say `Connection: close`; anything else (an error, a cancellation,
  a pod answering before it read the whole body) closes it. Idle connections older than
  `idle_s` are closed rather than reused, below aiohttp's server keep-alive of 75 s.
- Timeouts: connecting takes at most `connect_timeout_s`; while the body is sent, the pod
  must accept bytes at least every `stall_s` (time spent waiting on the body's own source
  does not count); the answer must come within `stall_s` of the last byte sent.
- Errors are OSError / TimeoutError / WireError; the caller maps them to pod errors.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from typing import Any, cast

from kurastore.storage._buffers import receive_buffer
from kurastore.storage._flow import WriteFlow

__all__ = ["BodyLengthError", "WireError", "WirePool", "WireResponse", "parse_head"]

_MAX_HEAD = 64 << 10
_HEAD_READ = 64 << 10  # the scratch buffer response heads (and small answers) are read into
_SLICE = 1 << 20  # a bytes body is written in slices of this size
_MAX_ANSWER = 1 << 20  # answers other than shard data are small JSON documents
Body = bytes | bytearray | memoryview | AsyncIterable[bytes | memoryview]


class WireError(Exception):
    """The pod's answer was not HTTP/1.1 as expected, or the connection broke off."""


class BodyLengthError(ValueError):
    """The body gave more or fewer bytes than its declared length."""


@dataclass(frozen=True)
class WireResponse:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytearray  # received in place: the kernel copies straight into it


class _Connection(WriteFlow, asyncio.BufferedProtocol):
    """One socket: collects the response while (or after) the request is written.

    A BufferedProtocol, so a response body (k shard ranges per object read) is received
    straight into one buffer of its Content-Length: no per-read bytes objects and no join.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = time.monotonic()
        self.max_body = _MAX_ANSWER
        self.progress = 0  # reads so far: a pod that sends slowly is not a silent pod
        self._scratch = memoryview(bytearray(_HEAD_READ))  # heads are read through this
        self._head_bytes = bytearray()  # the response head, until it is complete
        self._head: tuple[int, dict[str, str], int] | None = None  # status, headers, length
        self._body = bytearray()
        self._received = 0
        self._into_body = False
        self._answer: asyncio.Future[WireResponse] | None = None
        self._can_write: asyncio.Future[None] | None = None
        self._error: BaseException | None = None

    # -- asyncio.BufferedProtocol ----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def get_buffer(self, sizehint: int) -> memoryview:
        self._into_body = self._head is not None and self._received < len(self._body)
        if self._into_body:
            return memoryview(self._body)[self._received :]
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        self.progress += 1
        if self._into_body:
            self._received += nbytes
        else:
            self._head_bytes += self._scratch[:nbytes]
        if self._answer is None or self._answer.done():
            if self._head_bytes:
                self._fail(WireError("bytes from the pod with no request outstanding"))
            return
        try:
            response = self._parse()
        except WireError as exc:
            self._fail(exc)
            return
        if response is not None:
            self._answer.set_result(response)

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost reports it

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or WireError("connection closed by the pod"))

    # -- used by WirePool ------------------------------------------------------------------
    def _fail(self, exc: BaseException) -> None:
        self.closed = True
        self._error = exc
        for waiter in (self._answer, self._can_write):
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)
                waiter.exception()  # whoever awaits it still gets it; nobody else logs it
        if self.transport is not None:
            self.transport.abort()

    def start(self, max_body: int) -> asyncio.Future[WireResponse]:
        self._answer = asyncio.get_running_loop().create_future()
        self._head, self._body, self._received = None, bytearray(), 0
        self.max_body = max_body
        return self._answer

    def finish(self) -> None:
        self._answer, self._head = None, None
        self.idle_since = time.monotonic()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    @property
    def answered(self) -> bool:
        return self._answer is not None and self._answer.done()

    async def drain(self, timeout_s: float) -> None:
        if self._error is not None:
            raise self._error
        if self._can_write is not None and not self._can_write.done():
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(self._can_write)

    def _parse(self) -> WireResponse | None:
        if self._head is None:
            end = self._head_bytes.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head_bytes) > _MAX_HEAD:
                    raise WireError("response head too large")
                return None
            self._head = parse_head(self._head_bytes[:end], self.max_body)
            length = self._head[2]
            early = memoryview(self._head_bytes)[end + 4 :]  # body bytes read with the head
            if len(early) > length:
                raise WireError("more bytes than the response's Content-Length")
            self._body = receive_buffer(length)  # every byte is received into it
            self._body[: len(early)] = early
            self._received = len(early)
            early.release()
            self._head_bytes.clear()
        elif self._head_bytes:
            raise WireError("more bytes than the response's Content-Length")
        status, headers, length = self._head
        if self._received < length:
            return None
        body, self._body, self._received = self._body, bytearray(), 0
        return WireResponse(status, headers, body)


def parse_head(
    head: bytes | bytearray | memoryview, max_body: int
) -> tuple[int, dict[str, str], int]:
    """(status, lower-case headers, Content-Length) of a response head without its
    blank line; `Connection: close` is set for HTTP/1.0 too. Raises WireError."""
    lines = bytes(head).decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise WireError(f"bad status line {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise WireError(f"bad header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length", "")
    if not length.isdigit() or int(length) > max_body:
        raise WireError(f"response without a usable Content-Length ({length!r})")
    if parts[0] == "HTTP/1.0" or headers.get("connection", "").lower() == "close":
        headers["connection"] = "close"
    return int(parts[1]), headers, int(length)


class WirePool:
    """Keep-alive connections per pod address, and the requests (shard PUT and GET) that
    use them."""

    def __init__(
        self, *, connect_timeout_s: float, stall_s: float, idle_s: float = 15.0,
        max_idle_per_host: int = 64,
    ) -> None:
        self._connect_timeout_s = connect_timeout_s
        self._stall_s = stall_s
        self._idle_s = idle_s
        self._max_idle = max_idle_per_host
        self._idle: dict[tuple[str, int], list[_Connection]] = {}

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    async def _acquire(self, host: str, port: int) -> _Connection:
        idle = self._idle.get((host, port))
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self._idle_s:
                return conn
            conn.close()
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self._connect_timeout_s):
            _transport, conn = await loop.create_connection(_Connection, host, port)
        return conn

    def _release(self, host: str, port: int, conn: _Connection) -> None:
        idle = self._idle.setdefault((host, port), [])
        if conn.closed or len(idle) >= self._max_idle:
            conn.close()
            return
        conn.finish()
        idle.append(conn)

    async def request(
        self, method: str, host: str, port: int, target: str, headers: dict[str, str],
        body: Body | None = None, length: int | None = None, *, max_body: int = _MAX_ANSWER,
    ) -> WireResponse:
        """Send one request with `body` (exactly `length` bytes when given; none for None)
        and return the pod's answer, whose body may be up to `max_body` bytes.
        Raises OSError, TimeoutError, WireError, BodyLengthError."""
        conn = await self._acquire(host, port)
        reusable = False
        try:
            answer = conn.start(max_body)
            head = [f"{method} {target} HTTP/1.1", f"Host: {host}:{port}"]
            head += [f"{name}: {value}" for name, value in headers.items()]
            chunked = body is not None and length is None
            if body is not None:
                head.append("Transfer-Encoding: chunked" if chunked
                            else f"Content-Length: {length}")
            assert conn.transport is not None
            conn.transport.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            complete = True
            if body is not None:
                complete = await self._send_body(conn, body, length, chunked)
            response = await self._await_answer(conn, answer)
            # Reusable only if the pod read the whole request and keeps the connection.
            reusable = complete and response.headers.get("connection") != "close"
            return response
        finally:
            if reusable:
                self._release(host, port, conn)
            else:
                conn.close()

    async def _await_answer(
        self, conn: _Connection, answer: asyncio.Future[WireResponse]
    ) -> WireResponse:
        """The answer, as long as the pod sends some of it at least every `stall_s`.

        One timer per request that re-arms itself while reads come in (k+m requests per
        object: asyncio.timeout with a shield cost twice as much here)."""
        loop = asyncio.get_running_loop()
        seen = conn.progress

        # The timer re-arms with the callback it was given: a closure naming itself would
        # hold itself, and with it the answer (a shard's whole body), in a cycle only a
        # full garbage collection frees. A gateway serving 64 MiB GETs held 400 MiB so.
        def watch(again: Callable[[Any], None]) -> None:
            nonlocal seen, timer
            if answer.done():
                return
            if conn.progress != seen:
                seen = conn.progress
                timer = loop.call_later(self._stall_s, again, again)
                return
            answer.set_exception(TimeoutError(f"no answer for {self._stall_s} s"))

        timer = loop.call_later(self._stall_s, watch, watch)
        try:
            return await answer
        finally:
            timer.cancel()  # drops the timer's hold on watch

    async def _send_body(
        self, conn: _Connection, body: Body, length: int | None, chunked: bool
    ) -> bool:
        """Write the body; False if the pod answered before all of it was sent."""
        try:
            return await self._write_body(conn, body, length, chunked)
        except (OSError, WireError, TimeoutError):
            if conn.answered:
                return False  # the pod refused early and closed: its answer is what counts
            raise

    async def _write_body(
        self, conn: _Connection, body: Body, length: int | None, chunked: bool
    ) -> bool:
        transport = conn.transport
        assert transport is not None
        if isinstance(body, bytes | bytearray | memoryview):
            view = memoryview(body).cast("B")
            if length is not None and view.nbytes != length:
                raise BodyLengthError(f"length {length} != body size {view.nbytes}")
            if chunked and view.nbytes:
                transport.write(f"{view.nbytes:x}\r\n".encode())
            # In slices, so a large body is not copied whole into the transport's buffer.
            for off in range(0, view.nbytes, _SLICE):
                if conn.answered:
                    return False
                transport.write(view[off : off + _SLICE])
                await conn.drain(self._stall_s)
            if chunked:
                transport.write(b"\r\n0\r\n\r\n" if view.nbytes else b"0\r\n\r\n")
            await conn.drain(self._stall_s)
            return True
        sent = 0
        async for chunk in body:
            if conn.answered:
                return False  # the pod refused early (409, 507 ...): stop sending
            size = len(chunk)
            sent += size
            if length is not None and sent > length:
                raise BodyLengthError(f"body longer than the declared length {length}")
            if not size:
                continue
            if chunked:
                transport.writelines([f"{size:x}\r\n".encode(), chunk, b"\r\n"])
            else:
                transport.write(chunk)
            await conn.drain(self._stall_s)
        if length is not None and sent != length:
            raise BodyLengthError(f"body of {sent} bytes, declared length {length}")
        if chunked:
            transport.write(b"0\r\n\r\n")
            await conn.drain(self._stall_s)
        return True
