"""The S3 front: one aiohttp handler for every S3 request, and the S3 error answer.

`S3Frontend.handle` runs the one obvious path: classify (pure) -> authenticate
(or anonymous) -> find the handler -> load the bucket -> authorize (access.py:
policy, owner, ACLs) -> resolve the ACL and owner of a write (ownership.py) ->
"100 Continue" if the client waits for it -> call the handler.
It raises S3Errors and domain errors; the error middleware turns them into
answers with `render_s3_error`, the only place an exception becomes S3 XML.

Rules: anonymous requests get exactly what public grants allow; PostObject is
signed by its form fields, so handlers_post authenticates (and authorizes) it
itself; nothing reads a request body before it is authorized; an operation without
a handler answers NotImplemented (501), never 500. server_log.S3_OP,
S3_BUCKET and S3_KEY are set on the request for the access log; a request
naming a bucket is watched by the bucket's server access log (server_log_delivery.py),
which reads the requester, auth scheme, bucket record and error code set here. CORS
comes first (cors.py): a preflight OPTIONS is answered without credentials, and
a request with an Origin gets its bucket's CORS headers on whatever answer it
gets, errors included (middlewares.EXTRA_HEADERS).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import HttpVersion11, web

from kurastore.gateway.middlewares import EXTRA_HEADERS, OP
from kurastore.gateway.objects import errors as dom
from kurastore.gateway.s3 import (
    access,
    cors,
    handlers_access,
    handlers_bucket,
    handlers_config,
    handlers_misc,
    handlers_multipart,
    handlers_object,
    handlers_post,
    handlers_unconfigured,
    lock,
    ownership,
    server_log,
    torrent,
)
from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3.auth import authenticate
from kurastore.gateway.s3.context import Handler, S3Request
from kurastore.gateway.s3.headers import check_version_id, http_date
from kurastore.gateway.s3.routes import S3Op, bucket_from_host, classify
from kurastore.gateway.s3.server_log_delivery import BUCKET_RECORD, ServerLogDelivery
from kurastore.gateway.s3.xml import el

if TYPE_CHECKING:
    from kurastore.gateway.objects.service import ObjectService

log = logging.getLogger(__name__)

MAX_KEY_BYTES = 1024
# request key: "100 Continue" is owed, not yet sent
EXPECT_PENDING = web.RequestKey("s3_expect_continue", bool)
HANDLERS: dict[S3Op, Handler] = {
    **handlers_bucket.HANDLERS,
    **handlers_object.HANDLERS,
    **handlers_multipart.HANDLERS,
    **handlers_misc.HANDLERS,
    **handlers_access.HANDLERS,
    **handlers_config.HANDLERS,
    **lock.HANDLERS,
    **ownership.HANDLERS,
    **handlers_unconfigured.HANDLERS,
    S3Op.GET_OBJECT_TORRENT: torrent.get_object_torrent,
}
_WRITES_WITH_ACL = frozenset({S3Op.PUT_OBJECT, S3Op.COPY_OBJECT, S3Op.CREATE_MULTIPART_UPLOAD})


class S3Frontend:
    def __init__(
        self,
        service: ObjectService,
        *,
        region: str = "us-east-1",
        domain: str | None = None,
        max_keys_limit: int = 1000,
        server_log: ServerLogDelivery | None = None,
    ) -> None:
        self._service = service
        self._server_log = server_log
        self._region = region
        self._domain = domain
        self._max_keys_limit = max_keys_limit

    async def handle(self, request: web.Request) -> web.StreamResponse:
        path = request.raw_path.split("?", 1)[0]
        op, bucket, key = classify(
            request.method, path, request.query, request.headers, domain=self._domain
        )
        request[server_log.S3_OP], request[server_log.S3_BUCKET] = op.value, bucket
        request[server_log.S3_KEY] = key
        request[OP] = op.value  # names the operation in the access log and metrics
        if bucket and self._server_log is not None:  # the bucket's server access log
            self._server_log.watch(request)
        if op is S3Op.OPTIONS:  # CORS preflight: answered without credentials
            return await cors.preflight(request, self._service, bucket)
        if bucket and "Origin" in request.headers:  # on every answer, errors included
            request[EXTRA_HEADERS] = await cors.actual_headers(request, self._service, bucket)
        if op is S3Op.UNKNOWN and request.method == "POST" and key and not request.query:
            # A form POST to an object's URL (forms go to the bucket's), as S3 answers it.
            raise s3e.MethodNotAllowed(Method="POST", ResourceType="OBJECT")
        if op is S3Op.POST_OBJECT:  # signed by its form fields, not its headers
            await send_continue(request)
            return await handlers_post.post_object(
                request, self._service, bucket, region=self._region
            )
        auth = await authenticate(
            request,
            self._service.lookup_secret,
            region=self._region,
            bucket_in_host=bucket_from_host(request.headers.get("Host", ""), self._domain),
        )
        request[server_log.AUTH_SCHEME] = auth.scheme
        request[server_log.REQUESTER] = auth.principal.user_id if auth.principal else ""
        handler = HANDLERS.get(op)
        if handler is None:
            raise s3e.NotImplemented_()
        if len(key.encode()) > MAX_KEY_BYTES:
            raise s3e.KeyTooLongError()
        if key and "versionId" in request.query:
            check_version_id(request.query["versionId"])
        record = None
        if bucket and op is not S3Op.CREATE_BUCKET:
            # Bucket-level writes (PUT ?tagging, ?acl...) rewrite settings: read them fresh.
            fresh = not key and request.method not in ("GET", "HEAD")
            record = await self._service.get_bucket(bucket, fresh=fresh)
            request[BUCKET_RECORD] = record
        s3 = S3Request(
            request=request, service=self._service, op=op, bucket=bucket, key=key,
            principal=auth.principal, auth=auth, bucket_record=record, region=self._region,
            max_keys_limit=self._max_keys_limit,
        )  # fmt: skip
        await access.authorize(s3)
        if op in _WRITES_WITH_ACL and record is not None:
            s3.object_owner, s3.acl_headers = await ownership.write_owner(s3, record)
        await send_continue(request)  # only now may the client send its body
        return await handler(s3)


async def expect_handler(request: web.Request) -> None:
    """The route's Expect handler: "100 Continue" is not sent here but by
    `send_continue`, once the request is authenticated and authorized, so a client
    that waits for it never sends a body the answer refuses (AWS's behaviour). Any other
    expectation is ignored, as S3 ignores it (aiohttp's default would answer 417)."""
    if request.headers.get("Expect", "").lower() != "100-continue":
        return
    if request.version == HttpVersion11:
        request[EXPECT_PENDING] = True


async def send_continue(request: web.Request) -> None:
    """Sends the deferred "100 Continue", once."""
    if request.get(EXPECT_PENDING):
        request[EXPECT_PENDING] = False
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0  # the answer has not started yet


def render_s3_error(request: web.Request, exc: BaseException, request_id: str) -> web.Response:
    """The S3 error answer for any exception: XML <Error> with Code, Message,
    Resource, RequestId and the error's extra fields; no body for HEAD and 304.

    When part of a response already went out (a GET failing mid-stream), no
    honest answer exists: the exception is re-raised so the connection drops.
    """
    writer = getattr(request, "_payload_writer", None)
    if writer is not None and getattr(writer, "output_size", 0) > 0:
        raise exc
    err = s3e.to_s3_error(exc)
    request[server_log.ERROR_CODE] = err.code
    if isinstance(exc, dom.DataLost):  # the cause says it all; a traceback would not
        log.error("request %s: object unreadable: %s", request_id, exc)
    elif err.code == "InternalError" and not isinstance(exc, s3e.S3Error):
        log.error("request %s failed", request_id, exc_info=exc)
    elif err.status == 503 and not isinstance(exc, s3e.S3Error):  # pods or metadata out
        log.warning("request %s refused: %s", request_id, exc)
    fields = {**_context_fields(request, err), **err.fields}
    headers, status = _domain_headers(request, exc), err.status
    if status == 503:  # SlowDown / ServiceUnavailable: the client should come back soon
        headers.setdefault("Retry-After", "1")
    if isinstance(exc, dom.ObjectNotFound) and exc.delete_marker and "versionId" in request.query:
        err, status = s3e.MethodNotAllowed(), 405  # a version id naming a delete marker
    for name in [n for n in fields if n.startswith("header:")]:
        headers[name[len("header:") :]] = fields.pop(name)
    if request.method == "HEAD" or status == 304:
        return _closing_if_owed(request, web.Response(status=status, headers=headers))
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>'
        + el("Code", err.code) + el("Message", err.text)
        + "".join(el(name, value) for name, value in fields.items())
        + el("Resource", request.path) + el("RequestId", request_id) + el("HostId", request_id)
        + "</Error>"
    )  # fmt: skip
    return _closing_if_owed(request, web.Response(
        status=status, body=body.encode(), headers=headers, content_type="application/xml"
    ))


def _closing_if_owed(request: web.Request, response: web.Response) -> web.Response:
    """A client still waiting for "100 Continue" holds its body back: close the
    connection after the answer instead of waiting for a body that never comes."""
    if request.get(EXPECT_PENDING):
        response.force_close()
    return response


def _context_fields(request: web.Request, err: s3e.S3Error) -> dict[str, str]:
    bucket, key = request.get(server_log.S3_BUCKET, ""), request.get(server_log.S3_KEY, "")
    if err.code in ("NoSuchKey", "NoSuchVersion") and key:
        out = {"Key": key}
        if err.code == "NoSuchVersion":
            out["VersionId"] = request.query.get("versionId", "")
        return out
    if err.code == "NoSuchUpload":
        return {"UploadId": request.query.get("uploadId", "")}
    if err.code in ("NoSuchBucket", "BucketNotEmpty", "BucketAlreadyExists",
                    "BucketAlreadyOwnedByYou") and bucket:  # fmt: skip
        return {"BucketName": bucket}
    return {}


def _domain_headers(request: web.Request, exc: BaseException) -> dict[str, str]:
    """Headers a domain error implies: 304 validators, 416 Content-Range, and the
    delete marker a 404 hit."""
    if isinstance(exc, dom.NotModified):
        version = exc.version
        return {"ETag": f'"{version.etag}"', "Last-Modified": http_date(version.last_modified)}
    if isinstance(exc, dom.InvalidRange):
        return {"Content-Range": f"bytes */{exc.size}"}
    if isinstance(exc, dom.ObjectNotFound) and exc.delete_marker:
        headers = {"x-amz-delete-marker": "true"}
        if exc.version_id:
            headers["x-amz-version-id"] = exc.version_id
        return headers
    if isinstance(exc, dom.ObjectNotFound) and request.get(server_log.S3_OP) in (
            "GetObject", "HeadObject"):
        return {"x-amz-delete-marker": "false"}  # as RGW and the conformance suite say
    return {}
