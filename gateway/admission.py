"""Overload and slow clients: how many S3 and Swift requests the gateway serves at
once, and how long a client may make a request wait on it.

- Admission: at most `max_in_flight` requests are served at once; more wait in a
  line of at most `max_queued` for up to `queue_wait_s`; the rest are answered at
  once with the protocol's 503 (S3 SlowDown, Swift 503). Probes, metrics and the
  admin API are never refused: an operator must see and act on an overloaded store.
- Slow clients (checked by one sweeper task for every admitted request): a body
  that arrives slower than `min_body_rate` over a `client_timeout_s` window is cut
  off with the protocol's request timeout (S3 RequestTimeout, Swift 408); a
  response the client stops reading for `client_timeout_s` drops the connection.
  Idle keep-alive connections and headers that never complete are closed by
  aiohttp's keep-alive timer (the runner's keepalive_timeout, GatewayConfig
  idle_timeout_s).

Rules: a request is blamed for a slow body only while the gateway waits for it (the
transport is reading, no "100 Continue" is still owed, and the body has not all
arrived): when the gateway is behind, the transport is paused and the window
restarts. Answers are written to the end inside the tracked region, so every write
of an admitted request has a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import Counter

from kurastore.gateway.config import GatewayConfig
from kurastore.gateway.keys import CONFIG, ERROR_RENDERERS, METRICS
from kurastore.gateway.middlewares import PROTOCOL, REQUEST_ID, Handler, note_client_gone
from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3.auth import has_s3_credentials
from kurastore.gateway.s3.frontend import EXPECT_PENDING
from kurastore.gateway.swift import errors as swe
from kurastore.gateway.swift.frontend import wants_swift

log = logging.getLogger("kurastore.gateway")

PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


@dataclass(frozen=True)
class Limits:
    max_in_flight: int
    max_queued: int
    queue_wait_s: float
    client_timeout_s: float
    min_body_rate: float  # bytes per second

    @classmethod
    def from_config(cls, config: GatewayConfig) -> Limits:
        return cls(
            max_in_flight=config.max_in_flight_requests,
            max_queued=config.max_queued_requests,
            queue_wait_s=config.queue_wait_s,
            client_timeout_s=config.client_timeout_s,
            min_body_rate=config.min_body_rate_bytes_s,
        )


class _Watch:
    """What the sweeper knows of one admitted request."""

    __slots__ = ("body_bytes", "body_since", "protocol", "request", "timed_out",
                 "write_since", "write_size")  # fmt: skip

    def __init__(self, request: web.Request, protocol: str, now: float) -> None:
        self.request = request
        self.protocol = protocol
        self.body_since = now
        self.body_bytes = request.content.total_bytes
        self.write_since = now
        self.write_size = 0
        self.timed_out = False


class Admission:
    """The in-flight bound, its waiting line, and the slow-client sweeper."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._slots = asyncio.Semaphore(max(1, limits.max_in_flight))
        self.waiting = 0
        self._watches: dict[int, _Watch] = {}

    async def enter(self) -> bool:
        """Take a slot, waiting in line if there is room; False: refuse the request."""
        if not self._slots.locked():
            await self._slots.acquire()
            return True
        if self.waiting >= self.limits.max_queued or self.limits.queue_wait_s <= 0:
            return False
        self.waiting += 1
        try:
            async with asyncio.timeout(self.limits.queue_wait_s):
                await self._slots.acquire()
            return True
        except TimeoutError:
            return False
        finally:
            self.waiting -= 1

    def leave(self) -> None:
        self._slots.release()

    @contextlib.contextmanager
    def watch(self, request: web.Request, protocol: str) -> Iterator[_Watch]:
        watch = _Watch(request, protocol, time.monotonic())
        self._watches[id(watch)] = watch
        try:
            yield watch
        finally:
            del self._watches[id(watch)]

    def sweep(self, now: float, metrics_rejected: Counter) -> None:
        """One pass over the admitted requests: cut slow bodies and stalled readers."""
        window = self.limits.client_timeout_s
        for watch in list(self._watches.values()):
            transport = watch.request.transport
            if transport is None or transport.is_closing():
                continue
            if not watch.timed_out and self._body_too_slow(watch, transport, now, window):
                watch.timed_out = True
                metrics_rejected.labels(watch.protocol, "slow_body").inc()
                error = s3e.RequestTimeout() if watch.protocol == "s3" else swe.RequestTimeout()
                watch.request.content.set_exception(error)
                continue
            size = transport.get_write_buffer_size()
            if size == 0 or size != watch.write_size:
                watch.write_size, watch.write_since = size, now
            elif now - watch.write_since >= window:
                # Nothing of the answer was read for a whole window: give up on the client.
                metrics_rejected.labels(watch.protocol, "stalled_reader").inc()
                log.info("request id=%s: the client stopped reading; connection dropped",
                         watch.request.get(REQUEST_ID))
                transport.abort()

    def _body_too_slow(self, watch: _Watch, transport: asyncio.BaseTransport, now: float,
                       window: float) -> bool:
        content = watch.request.content
        received = content.total_bytes
        reading = getattr(transport, "is_reading", lambda: True)()
        # A client waiting for its "100 Continue" is waiting on us, not slow.
        if content.is_eof() or not reading or watch.request.get(EXPECT_PENDING):
            watch.body_since, watch.body_bytes = now, received
            return False
        if now - watch.body_since < window:
            return False
        if received - watch.body_bytes < self.limits.min_body_rate * window:
            return True
        watch.body_since, watch.body_bytes = now, received
        return False


ADMISSION = web.AppKey("admission", Admission)


def protocol_of(request: web.Request) -> str | None:
    """"s3" or "swift" for requests under admission; None for the exempt ones."""
    path = request.path
    if path.startswith("/_kura/"):
        return None
    if wants_swift(request):
        return "swift"
    if path in PROBE_PATHS and not has_s3_credentials(request.headers, request.query):
        return None
    return "s3"


def _overloaded(request: web.Request, protocol: str) -> web.Response:
    request[PROTOCOL] = protocol
    error: Exception = s3e.SlowDown() if protocol == "s3" else swe.ServiceUnavailable()
    response = request.app[ERROR_RENDERERS][protocol](request, error, request[REQUEST_ID])
    response.headers["Retry-After"] = "1"
    return response


@web.middleware
async def admission_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    protocol = protocol_of(request)
    if protocol is None:
        return await handler(request)
    admission = request.app[ADMISSION]
    if not await admission.enter():
        request.app[METRICS].rejected.labels(protocol, "overload").inc()
        return _overloaded(request, protocol)
    try:
        with admission.watch(request, protocol) as watch:
            response = await handler(request)
            if watch.timed_out:
                # The body was cut off: close after the answer, and let aiohttp's
                # lingering read of the rest end quietly (it stops on a timeout).
                response.force_close()
                request.content.set_exception(TimeoutError())
            # Written to the end here, under the write deadline (aiohttp's own later
            # prepare and write_eof then do nothing).
            try:
                if not response.prepared:
                    await response.prepare(request)
                await response.write_eof()
            except ConnectionError:
                # The client left before its answer (an upload interrupted half-way):
                # a 499 in the access log, not a server error.
                note_client_gone(request, response)
            return response
    finally:
        admission.leave()


async def admission_ctx(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: the Admission of this app and its sweeper task."""
    admission = Admission(Limits.from_config(app[CONFIG]))
    app[ADMISSION] = admission
    rejected = app[METRICS].rejected
    tick = min(1.0, admission.limits.client_timeout_s / 4)

    async def sweeper() -> None:
        while True:
            await asyncio.sleep(tick)
            try:
                admission.sweep(time.monotonic(), rejected)
            except Exception:  # a sweep must never stop the sweeper
                log.exception("slow-client sweep failed")

    task = asyncio.create_task(sweeper(), name="slow-client-sweeper")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
