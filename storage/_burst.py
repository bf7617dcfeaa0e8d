"""Bursts: a few pod requests sent together from one thread, answered together.

Why: a small object is k+m shard PUTs (or k shard GETs) at once. Through the asyncio
client of _wire.py each request costs its own task, futures, timers and loop wake-ups;
here one worker thread writes all of them with non-blocking sockets and a poll loop,
and blocking calls release the GIL. Measured against one pod process per shard, 300
objects of six 256 KiB shards, 8 at a time: 1.0 against 1.6-1.8 ms of the gateway's
CPU per object.

Rules:
- `exchange` blocks (run it in a worker thread) and never raises for one request: each
  gets its WireResponse, or the OSError / WireError / BurstStalled it failed with.
- One connection per request, from a thread-safe keep-alive pool or newly connected
  without blocking; a pooled connection the pod closed meanwhile is noticed and dropped
  before use. A connection goes back to the pool only after a whole request and a
  whole answer that did not say `Connection: close`.
- A pod that answers before it read the whole request (a refusal) is taken at its word;
  the rest of the body is not sent and the connection is closed.
- Deadlines: connecting within `connect_timeout_s`; every answer by `timeout_s` from
  the start; once some request was answered with success, the others get `grace_s(t)`
  more (t: how long that answer took), at most their own `patience_s`, counted from
  the latest success. A request past its deadline fails with BurstStalled.
"""

from __future__ import annotations

import errno
import math
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kurastore.storage._buffers import receive_buffer

# The same limits as the asyncio client's: answers to shard PUTs are small JSON documents.
from kurastore.storage._wire import (
    _HEAD_READ,
    _MAX_ANSWER,
    _MAX_HEAD,
    WireError,
    WireResponse,
    parse_head,
)

__all__ = ["BurstPool", "BurstRequest", "BurstStalled"]

_IOV_MAX = 512  # buffers per sendmsg, below the kernel's IOV_MAX of 1024
_READ = select.POLLIN | select.POLLPRI
_TROUBLE = select.POLLERR | select.POLLHUP | select.POLLNVAL
Outcome = WireResponse | OSError | WireError


class BurstStalled(TimeoutError):
    """The request was not answered within its deadline."""


@dataclass(frozen=True)
class BurstRequest:
    host: str
    port: int
    head: bytes  # request line and headers, ending with the blank line
    body: Sequence[bytes | bytearray | memoryview] = ()  # sent back to back after the head
    patience_s: float = math.inf  # the most this one is waited on after another's success


class _Exchange:
    """One request on one socket: connect, send, receive."""

    def __init__(self, request: BurstRequest, sock: socket.socket, connecting: bool) -> None:
        self.request = request
        self.sock = sock
        self.connecting = connecting
        self.out = [memoryview(request.head)] + [
            memoryview(piece).cast("B") for piece in request.body if len(piece)
        ]
        self.head = bytearray()
        self.parsed: tuple[int, dict[str, str], int] | None = None
        self.body = bytearray()
        self.received = 0
        self.outcome: Outcome | None = None
        self.polled = self.events()  # the events the poller waits for on this socket

    @property
    def sent_all(self) -> bool:
        return not self.out

    def events(self) -> int:
        return select.POLLOUT if self.connecting else (_READ | (select.POLLOUT if self.out else 0))

    def on_event(self, mask: int, scratch: memoryview) -> None:
        """Progress on a poll event; sets `outcome` when done (an error included)."""
        try:
            if self.connecting:
                error = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    raise OSError(error, f"connect: {errno.errorcode.get(error, error)}")
                if mask & _TROUBLE and not mask & select.POLLOUT:
                    raise OSError(errno.ECONNREFUSED, "connect failed")
                self.connecting = False
                mask |= select.POLLOUT
            if mask & (_READ | _TROUBLE):
                self._receive(scratch)
                if self.outcome is not None:
                    return
            if self.out and mask & select.POLLOUT:
                self._send()
        except (OSError, WireError) as exc:
            self.outcome = exc

    def _send(self) -> None:
        try:
            sent = self.sock.sendmsg(self.out[:_IOV_MAX])
        except (BlockingIOError, InterruptedError):
            return
        out = self.out
        while sent:
            first = out[0]
            if sent >= first.nbytes:
                sent -= first.nbytes
                out.pop(0)
            else:
                out[0] = first[sent:]
                sent = 0

    def _receive(self, scratch: memoryview) -> None:
        while self.outcome is None:
            if self.parsed is None:
                into = scratch
            else:
                into = memoryview(self.body)[self.received :]
            try:
                n = self.sock.recv_into(into)
            except (BlockingIOError, InterruptedError):
                return
            if not n:
                raise WireError("connection closed by the pod")
            if self.parsed is None:
                self.head += scratch[:n]
                self._parse_head()
            else:
                self.received += n
            if self.parsed is not None and self.received == self.parsed[2]:
                status, headers, _length = self.parsed
                self.outcome = WireResponse(status, headers, self.body)

    def _parse_head(self) -> None:
        end = self.head.find(b"\r\n\r\n")
        if end < 0:
            if len(self.head) > _MAX_HEAD:
                raise WireError("response head too large")
            return
        self.parsed = parse_head(self.head[:end], _MAX_ANSWER)
        length = self.parsed[2]
        early = len(self.head) - end - 4
        if early > length:
            raise WireError("more bytes than the response's Content-Length")
        self.body = receive_buffer(length)
        self.body[:early] = self.head[end + 4 :]
        self.received = early
        self.head = bytearray()

    @property
    def reusable(self) -> bool:
        return (
            isinstance(self.outcome, WireResponse)
            and self.sent_all
            and self.outcome.headers.get("connection") != "close"
        )


class BurstPool:
    """Keep-alive connections per pod address, shared by the threads running bursts."""

    def __init__(
        self, *, connect_timeout_s: float, idle_s: float = 15.0, max_idle_per_host: int = 64
    ) -> None:
        self._connect_timeout_s = connect_timeout_s
        self._idle_s = idle_s
        self._max_idle = max_idle_per_host
        self._lock = threading.Lock()
        self._idle: dict[tuple[str, int], list[tuple[socket.socket, float]]] = {}
        self._closed = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for sock, _since in conns:
                sock.close()

    # -- connections -----------------------------------------------------------------------
    def _pooled(self, address: tuple[str, int]) -> socket.socket | None:
        now = time.monotonic()
        while True:
            with self._lock:
                conns = self._idle.get(address)
                if not conns:
                    return None
                sock, since = conns.pop()
            if now - since < self._idle_s and _still_open(sock):
                return sock
            sock.close()

    def _give_back(self, address: tuple[str, int], sock: socket.socket) -> None:
        with self._lock:
            conns = self._idle.setdefault(address, [])
            if not self._closed and len(conns) < self._max_idle:
                conns.append((sock, time.monotonic()))
                return
        sock.close()

    def _open(self, request: BurstRequest) -> _Exchange:
        sock = self._pooled((request.host, request.port))
        if sock is not None:
            return _Exchange(request, sock, connecting=False)
        family, kind, proto, _name, address = socket.getaddrinfo(
            request.host, request.port, type=socket.SOCK_STREAM
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            error = sock.connect_ex(address)
            if error not in (0, errno.EINPROGRESS):
                raise OSError(error, f"connect: {errno.errorcode.get(error, error)}")
        except BaseException:
            sock.close()
            raise
        return _Exchange(request, sock, connecting=True)

    # -- the burst -------------------------------------------------------------------------
    def exchange(
        self,
        requests: Sequence[BurstRequest],
        *,
        timeout_s: float,
        grace_s: Callable[[float], float] = lambda _elapsed: math.inf,
    ) -> list[Outcome]:
        """Send every request at once; each one's answer or error, in order."""
        started = time.monotonic()
        hard = started + timeout_s
        connect_by = started + self._connect_timeout_s
        moved: float | None = None  # when the latest success came in
        grace = math.inf
        outcomes: list[Outcome | None] = [None] * len(requests)
        live: dict[int, tuple[int, _Exchange]] = {}  # fd -> (position, exchange)
        poller = select.poll()
        for position, request in enumerate(requests):
            try:
                ex = self._open(request)
            except OSError as exc:
                outcomes[position] = exc
                continue
            live[ex.sock.fileno()] = (position, ex)
            poller.register(ex.sock, ex.polled)
        scratch = memoryview(bytearray(_HEAD_READ))

        def deadline(ex: _Exchange) -> float:
            due = hard
            if ex.connecting:
                due = min(due, connect_by)
            if moved is not None:
                due = min(due, moved + min(grace, ex.request.patience_s))
            return due

        try:
            while live:
                now = time.monotonic()
                for fd, (position, ex) in list(live.items()):
                    if deadline(ex) <= now:
                        what = "connect" if ex.connecting else "answer"
                        ex.outcome = BurstStalled(f"no {what} after {now - started:.3f} s")
                        self._finish(poller, live, fd, outcomes, position, ex)
                if not live:
                    break
                wait = min(deadline(ex) for _position, ex in live.values()) - now
                for fd, mask in poller.poll(max(1, math.ceil(wait * 1000))):
                    position, ex = live[fd]
                    ex.on_event(mask, scratch)
                    if ex.outcome is None:
                        if ex.events() != ex.polled:
                            ex.polled = ex.events()
                            poller.modify(fd, ex.polled)
                        continue
                    if isinstance(ex.outcome, WireResponse) and ex.outcome.status < 400:
                        moved = time.monotonic()
                        grace = grace_s(moved - started)
                    self._finish(poller, live, fd, outcomes, position, ex)
        finally:
            for fd, (_position, ex) in live.items():
                poller.unregister(fd)
                ex.sock.close()
        done = [outcome for outcome in outcomes if outcome is not None]
        assert len(done) == len(requests)
        return done

    def _finish(
        self, poller: select.poll, live: dict[int, tuple[int, _Exchange]], fd: int,
        outcomes: list[Outcome | None], position: int, ex: _Exchange,
    ) -> None:
        poller.unregister(fd)
        del live[fd]
        assert ex.outcome is not None
        outcomes[position] = ex.outcome
        if ex.reusable:
            self._give_back((ex.request.host, ex.request.port), ex.sock)
        else:
            ex.sock.close()


def _still_open(sock: socket.socket) -> bool:
    """True if an idle keep-alive connection has neither been closed by the pod nor
    received anything unasked (which would be a protocol error: drop it)."""
    try:
        sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return True
    except OSError:
        return False
    return False  # the end of the stream, or bytes nobody asked for
