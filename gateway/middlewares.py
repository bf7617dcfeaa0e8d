"""Gateway middlewares, outermost first: access log + metrics, then errors; and
the response-prepare hook that stamps request ids on every answer.

Rules: the error middleware is the only place an exception becomes an HTTP
response, through the protocol's own error renderer. Middlewares never read or
rewrite bodies. A failure after the response was prepared is re-raised so
aiohttp drops the connection: an error is never written into a body.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from kurastore.gateway.keys import ERROR_RENDERERS, METRICS

log = logging.getLogger("kurastore.access")
errlog = logging.getLogger("kurastore.gateway")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

Completion = Callable[[web.Request, web.StreamResponse | None, int, float], None]

REQUEST_ID = web.RequestKey("request_id", str)
PROTOCOL = web.RequestKey("protocol", str)  # "s3", "swift", "admin", "probe"
OP = web.RequestKey("op", str)  # the operation name, AWS's own (PutObject...), set by the adapter
STARTED = web.RequestKey("response_started", bool)
# Headers an adapter wants on whatever answer goes out, errors and streams alike
# (the S3 adapter's CORS headers): a dict, set before the answer is prepared.
EXTRA_HEADERS = web.RequestKey("extra_response_headers", dict[str, str])
# Last edits of whatever answer goes out (Swift's TempURL drops and adds headers, its
# CORS adds some), run in order as the answer is prepared.
ANSWER_FILTERS = web.RequestKey("answer_filters", list[Callable[[web.StreamResponse], None]])
# the client closed the connection during the answer
CLIENT_GONE = web.RequestKey("client_gone", bool)
# Callbacks an adapter wants run once a request is over, answered or not (the S3 server
# access log): a list of `Completion`s, each called with (request, response or None,
# status, seconds). They run in the access log's `finally`: they must not block or await.
ON_COMPLETE = web.RequestKey("on_complete", list[Completion])


async def write_to_client(request: web.Request, response: web.StreamResponse,
                          data: bytes | memoryview) -> bool:
    """Write part of a streamed body; False when the client has closed the connection.

    A client that closes the connection (curl interrupted, a reader that had the
    bytes it wanted) is not a server error: the request is logged as 499, without a
    traceback, and the handler returns the response, which aiohttp ends quietly. Errors
    of our own (a failed shard read) still propagate and drop the connection."""
    try:
        await response.write(data)
    except ConnectionError:  # reset, broken pipe, or aiohttp's "Connection lost" in drain
        note_client_gone(request, response)
        return False
    return True


def note_client_gone(request: web.Request, response: web.StreamResponse) -> None:
    """Mark the request as abandoned by its client (a 499), logged once, quietly."""
    if not request.get(CLIENT_GONE):
        request[CLIENT_GONE] = True
        log.info("request id=%s: the client closed the connection after %d bytes of the "
                 "answer", request.get(REQUEST_ID), body_bytes_sent(request, response))


def body_bytes_sent(request: web.Request, response: web.StreamResponse | None) -> int:
    """Body bytes of the answer that went out (aiohttp's body_length counts the status
    line and headers too)."""
    if response is None or not response.prepared:
        return 0
    if request.method == "HEAD" or response.status in (204, 304):
        return 0
    if response.content_length is not None and not request.get(CLIENT_GONE):
        return response.content_length
    head = len(f"HTTP/1.1 {response.status} {response.reason}\r\n".encode()) + 2 + sum(
        len(name.encode()) + len(value.encode()) + 4 for name, value in response.headers.items())
    return max(0, response.body_length - head)


def new_request_id() -> str:
    return os.urandom(8).hex().upper()


async def stamp_response(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare hook: ids on every answer, errors and streams alike."""
    rid = request.get(REQUEST_ID) or new_request_id()
    request[STARTED] = True
    headers = response.headers
    headers.setdefault("x-amz-request-id", rid)
    headers.setdefault("x-amz-id-2", base64.b64encode(bytes.fromhex(rid) * 4).decode())
    if request.get(PROTOCOL) == "swift":
        headers.setdefault("X-Trans-Id", f"tx{rid.lower()}")
        headers.setdefault("X-Openstack-Request-Id", f"tx{rid.lower()}")
        if request.headers.get("Connection", "").lower() == "keep-alive" and request.keep_alive:
            headers.setdefault("Connection", "keep-alive")  # echoed, as Swift's proxy does
    headers.setdefault("Server", "kurastore")
    for name, value in request.get(EXTRA_HEADERS, {}).items():
        headers.setdefault(name, value)
    for answer_filter in request.get(ANSWER_FILTERS, ()):
        answer_filter(response)


@web.middleware
async def access_log_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[REQUEST_ID] = new_request_id()
    request.setdefault(PROTOCOL, "s3")
    request.setdefault(OP, "Unknown")
    metrics = request.app[METRICS]
    start = time.monotonic()
    status = 500
    metrics.in_flight += 1
    resp: web.StreamResponse | None = None
    try:
        resp = await handler(request)
        status = 499 if request.get(CLIENT_GONE) else resp.status
        return resp
    except web.HTTPException as exc:
        status = exc.status
        raise
    except BaseException:
        # Dropped mid-stream or cancelled by a disconnecting client.
        status = 499 if request.get(STARTED) or request.transport is None else 500
        raise
    finally:
        metrics.in_flight -= 1
        elapsed = time.monotonic() - start
        proto = request[PROTOCOL]
        op = request[OP]
        received = request.content.total_bytes
        sent = body_bytes_sent(request, resp)
        metrics.record_request(proto, op, status, elapsed, received, sent)
        for completion in request.get(ON_COMPLETE, ()):
            try:
                completion(request, resp, status, elapsed)
            except Exception:  # a broken hook must not turn an answer into an error
                errlog.exception("request id=%s: completion hook failed", request[REQUEST_ID])
        if proto != "probe":
            log.info(
                "request id=%s proto=%s op=%s method=%s path=%s status=%d in=%d out=%d "
                "ms=%.1f peer=%s",
                request[REQUEST_ID], proto, op, request.method, request.path, status,
                received, sent, elapsed * 1000, request.remote,
            )


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception as exc:
        if request.get(STARTED):
            # Too late for a clean error: drop the connection, the client sees a short read.
            errlog.warning(
                "request id=%s failed after the response started: %r", request[REQUEST_ID], exc
            )
            raise
        renderer = request.app[ERROR_RENDERERS].get(request[PROTOCOL])
        if renderer is None:
            raise
        response = renderer(request, exc, request[REQUEST_ID])
        if response.status >= 500:
            errlog.error(
                "request id=%s op=%s answered %d: %r", request[REQUEST_ID], request[OP],
                response.status, exc, exc_info=response.status == 500,
            )
        return response
