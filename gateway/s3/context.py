"""What an S3 handler receives: one value per request, built by the frontend.

It carries the classified operation, the authenticated principal (None for an
anonymous request), the bucket record (the request is already authorized by
access.py) and the object service.
Handlers reach the body only through `body()` (decoded, signature-checked) or
`read_xml_body()` (small XML documents), never through request.content.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aiohttp import web
from aiohttp.streams import EmptyStreamReader
from multidict import CIMultiDictProxy, MultiDictProxy

from kurastore.gateway.objects.errors import UserNotFound
from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3._sigv4 import STREAMING_MODES
from kurastore.gateway.s3.auth import AuthResult, DecodedBody, Principal, body_stream
from kurastore.gateway.s3.routes import S3Op
from kurastore.metadata import BucketRecord

if TYPE_CHECKING:  # the service is handed in; only objects/ reaches pods
    from kurastore.gateway.objects.service import ObjectService

MAX_XML_BODY_BYTES = 4 << 20  # DeleteObjects with 1000 keys of 1 KiB fits


@dataclass
class S3Request:
    request: web.Request
    service: ObjectService
    op: S3Op
    bucket: str
    key: str
    principal: Principal | None
    auth: AuthResult
    bucket_record: BucketRecord | None
    region: str
    max_keys_limit: int
    # The object ACL a write stores with the version (acl.object_headers), set by
    # the frontend from x-amz-acl / x-amz-grant-* before the handler runs.
    acl_headers: dict[str, str] = field(default_factory=dict)
    object_owner: str = ""  # who owns what this write stores (ownership.write_owner)
    # The object permission still to check once the handler has loaded the version
    # (access.check_loaded): set for the bucket owner, who skips the early lookup.
    loaded_check: str | None = None
    _names: dict[str, str] = field(default_factory=dict)
    _body: DecodedBody | None = None

    @property
    def query(self) -> MultiDictProxy[str]:
        return self.request.query

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        return self.request.headers

    @property
    def user_id(self) -> str:
        """The caller's user id; "" when anonymous."""
        return self.principal.user_id if self.principal is not None else ""

    @property
    def writer(self) -> str:
        """Who owns what this request writes: the caller, or the bucket owner when
        the caller is anonymous (a public-read-write bucket)."""
        if self.principal is not None:
            return self.principal.user_id
        return self.bucket_record.owner if self.bucket_record is not None else ""

    @property
    def is_versioned(self) -> bool:
        """Versioning was enabled at some point: answers carry version ids."""
        return bool(self.bucket_record and self.bucket_record.versioning)

    @property
    def versioning_enabled(self) -> bool:
        """Versioning is on now: a write answers the version id it made (a write to a
        suspended bucket makes the "null" version and, as S3, does not name it)."""
        return bool(self.bucket_record and self.bucket_record.versioning == "Enabled")

    def body(self) -> DecodedBody:
        """The decoded request body; created once (its trailers fill as it is read)."""
        if self._body is None:
            if self.request.body_exists:
                self._body = body_stream(self.request, self.auth)
            elif self.auth.payload in STREAMING_MODES:
                # An aws-chunked body has at least its final chunk: an absent one is short.
                raise s3e.IncompleteBody()
            else:
                # aiohttp shares one EmptyStreamReader between all bodiless requests,
                # and it answers "chunk end" forever after its first read: give this
                # request a fresh one. Nothing is stored from a body that is absent.
                self._body = DecodedBody(EmptyStreamReader(), decoded_length=0)
        return self._body

    async def read_xml_body(self) -> bytes:
        """The whole (small) body; larger than MAX_XML_BODY_BYTES is refused."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in self.body():
            size += len(chunk)
            if size > MAX_XML_BODY_BYTES:
                raise s3e.MaxMessageLengthExceeded()
            chunks.append(bytes(chunk))
        return b"".join(chunks)

    async def display_name(self, user_id: str) -> str:
        """The owner's display name, looked up once per request and user."""
        name = self._names.get(user_id)
        if name is None:
            try:
                name = (await self.service.get_user(user_id)).name
            except UserNotFound:  # a deleted user still owns its objects
                name = user_id
            self._names[user_id] = name
        return name

    async def display_name_strict(self, user_id: str) -> str:
        """The display name of an existing user; raises UserNotFound."""
        name = self._names.get(user_id)
        if name is None:
            name = self._names[user_id] = (await self.service.get_user(user_id)).name
        return name


Handler = Callable[[S3Request], Awaitable[web.StreamResponse]]


def xml_response(body: bytes, *, status: int = 200, headers: dict[str, str] | None = None
                 ) -> web.Response:
    return web.Response(
        body=body, status=status, headers=headers, content_type="application/xml"
    )


def empty_response(status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, headers=headers)
