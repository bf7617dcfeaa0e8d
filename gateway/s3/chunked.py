"""Request bodies decoded and verified while they stream: plain bodies (checked
against a signed x-amz-content-sha256 when there is one) and aws-chunked bodies
("<hex-size>[;chunk-signature=<sig>]\\r\\n<data>\\r\\n" ... a final 0-size chunk,
then trailing headers and, in the signed form, x-amz-trailer-signature).

Rules:
- Never buffer the body: data leaves as the network delivered it, as slices
  (memoryview) of the received buffers, never copied; only chunk header and
  trailer lines (bounded by _MAX_LINE) are assembled across buffers.
- Data is handed out before its chunk signature (which follows the data) is
  checked, so a body is valid only once iteration ends without an error: the
  consumer commits nothing before that, as the object service does.
- Every malformed body ends in an S3 error, never a hang or a 500: a short body
  is IncompleteBody, bad framing InvalidRequest, a bad chunk or trailer
  signature SignatureDoesNotMatch, a bad payload hash XAmzContentSHA256Mismatch.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import StreamReader
from aiohttp.http_exceptions import HttpProcessingError

from kurastore.gateway.objects.checksums import algorithm_from_header, is_valid_b64
from kurastore.gateway.s3 import _sigv4
from kurastore.gateway.s3.errors import (
    IncompleteBody,
    InvalidRequest,
    SignatureDoesNotMatch,
    XAmzContentSHA256Mismatch,
)

_MAX_LINE = 4096  # one chunk header or trailer line
_MAX_TRAILERS = 32
_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
TRAILER_SIGNATURE = "x-amz-trailer-signature"


@dataclass(frozen=True)
class ChunkSigning:
    """What chains the chunk signatures to the request's seed signature."""

    key: bytes = field(repr=False)
    amz_date: str
    scope: str
    seed_signature: str = field(repr=False)


class _Buffers:
    """The body's buffers as the network delivered them, with a read position."""

    __slots__ = ("_content", "buf", "pos", "view")

    def __init__(self, content: StreamReader) -> None:
        self._content = content
        self.buf = b""
        self.view = memoryview(self.buf)
        self.pos = 0

    async def fill(self) -> bool:
        """Move to the next buffer; False at the end of the body."""
        while True:
            try:
                data, end_of_http_chunk = await self._content.readchunk()
            except (HttpProcessingError, ConnectionError, asyncio.IncompleteReadError) as exc:
                raise IncompleteBody() from exc
            if data:
                self.buf, self.view, self.pos = data, memoryview(data), 0
                return True
            # aiohttp shares one EmptyStreamReader among body-less requests; after
            # its first EOF it answers (b"", True) forever, so ask at_eof() too.
            if not end_of_http_chunk or self._content.at_eof():
                return False

    def left(self) -> int:
        return len(self.buf) - self.pos

    async def line(self) -> bytes | None:
        """The next CRLF-terminated line without its CRLF; None when the body ends
        before the line starts. InvalidRequest past _MAX_LINE bytes."""
        end = self.buf.find(b"\r\n", self.pos, self.pos + _MAX_LINE + 2)
        if end >= 0:
            line = self.buf[self.pos : end]
            self.pos = end + 2
            return line
        if self.left() > _MAX_LINE + 1:
            raise InvalidRequest("An aws-chunked header line is malformed or too long.")
        pending = bytearray(self.buf[self.pos :])
        while True:
            if not await self.fill():
                if pending:
                    raise IncompleteBody()
                return None
            if pending.endswith(b"\r") and self.buf.startswith(b"\n"):
                self.pos = 1
                return bytes(pending[:-1])
            end = self.buf.find(b"\r\n", 0, _MAX_LINE + 2)
            if end >= 0 and len(pending) + end <= _MAX_LINE:
                pending += self.view[:end]
                self.pos = end + 2
                return bytes(pending)
            pending += self.view[: _MAX_LINE + 2]
            if len(pending) > _MAX_LINE + 1:
                raise InvalidRequest("An aws-chunked header line is malformed or too long.")
            self.pos = len(self.buf)


class DecodedBody:
    """An async iterator over the decoded request body (see the module rules).

    `decoded_length` is the length the client stated (Content-Length, or
    x-amz-decoded-content-length for aws-chunked), None when it stated none;
    `trailers` (lowercase names) is filled once the body is exhausted.
    """

    def __init__(
        self,
        content: StreamReader,
        *,
        decoded_length: int | None,
        aws_chunked: bool = False,
        expected_sha256: str | None = None,
        signing: ChunkSigning | None = None,
        trailer: bool = False,
        declared_trailers: frozenset[str] = frozenset(),
        chunk_size: int = 1 << 20,
    ) -> None:
        self.decoded_length = decoded_length
        self.trailers: dict[str, str] = {}
        self.received = 0  # decoded bytes handed out so far
        self._content = content
        self._aws_chunked = aws_chunked
        self._expected_sha256 = expected_sha256
        self._signing = signing
        self._trailer = trailer
        self._declared = declared_trailers
        self._chunk_size = max(1, chunk_size)
        self._started = False

    def __aiter__(self) -> AsyncIterator[bytes | memoryview]:
        if self._started:
            raise RuntimeError("a request body can be read only once")
        self._started = True
        return self._chunked() if self._aws_chunked else self._plain()

    async def _plain(self) -> AsyncIterator[bytes | memoryview]:
        buffers = _Buffers(self._content)
        sha = hashlib.sha256() if self._expected_sha256 is not None else None
        step = self._chunk_size
        while await buffers.fill():
            data = buffers.buf
            if sha is not None:
                sha.update(data)
            self.received += len(data)
            if len(data) <= step:
                yield data
            else:
                for start in range(0, len(data), step):
                    yield buffers.view[start : start + step]
        if self.decoded_length is not None and self.received < self.decoded_length:
            raise IncompleteBody()
        if sha is not None and self._expected_sha256 is not None:
            computed = sha.hexdigest()
            if not hmac.compare_digest(computed, self._expected_sha256):
                raise XAmzContentSHA256Mismatch(
                    ClientComputedContentSHA256=self._expected_sha256,
                    S3ComputedContentSHA256=computed,
                )

    async def _chunked(self) -> AsyncIterator[bytes | memoryview]:
        buffers = _Buffers(self._content)
        signing = self._signing
        previous = signing.seed_signature if signing is not None else ""
        step = self._chunk_size
        while True:
            header = await buffers.line()
            if header is None:
                raise IncompleteBody()
            size, provided = _parse_chunk_header(header, signed=signing is not None)
            if self.decoded_length is not None and self.received + size > self.decoded_length:
                raise InvalidRequest("The aws-chunked body exceeds x-amz-decoded-content-length.")
            sha = hashlib.sha256() if signing is not None else None
            remaining = size
            while remaining:
                if not buffers.left() and not await buffers.fill():
                    raise IncompleteBody()
                n = min(remaining, buffers.left(), step)
                piece = buffers.view[buffers.pos : buffers.pos + n]
                buffers.pos += n
                remaining -= n
                self.received += n
                if sha is not None:
                    sha.update(piece)
                yield piece
            if signing is not None and sha is not None:
                expected = _sigv4.chunk_signature(
                    signing.key, signing.amz_date, signing.scope, previous, sha.hexdigest()
                )
                if not _sigv4.signatures_equal(expected, provided):
                    raise SignatureDoesNotMatch("The chunk signature does not match.")
                previous = provided.lower()
            if size == 0:
                break
            after = await buffers.line()
            if after is None:
                raise IncompleteBody()
            if after:
                raise InvalidRequest("An aws-chunked chunk is not followed by CRLF.")
        await self._read_trailers(buffers, previous)
        if self.decoded_length is not None and self.received != self.decoded_length:
            raise IncompleteBody()
        if buffers.left() or await buffers.fill():
            raise InvalidRequest("Data follows the final aws-chunked chunk.")

    async def _read_trailers(self, buffers: _Buffers, previous: str) -> None:
        trailers: dict[str, str] = {}
        provided: str | None = None
        while True:
            line = await buffers.line()
            if line is None:
                # Some clients end the body right after the last trailer line.
                if self._signing is not None and self._trailer:
                    raise IncompleteBody()
                break
            if not line:
                break
            name_bytes, sep, value_bytes = line.partition(b":")
            if not sep or len(trailers) >= _MAX_TRAILERS:
                raise InvalidRequest("The request contained malformed trailing data.")
            name = name_bytes.decode("latin-1").strip().lower()
            value = value_bytes.decode("latin-1").strip()
            if name == TRAILER_SIGNATURE:
                provided = value
            else:
                trailers[name] = value
        self._check_trailers(trailers)
        if self._signing is not None and self._trailer:
            signing = self._signing
            expected = _sigv4.trailer_signature(
                signing.key, signing.amz_date, signing.scope, previous, trailers.items()
            )
            if provided is None or not _sigv4.signatures_equal(expected, provided):
                raise SignatureDoesNotMatch("The trailer signature does not match.")
        self.trailers = trailers

    def _check_trailers(self, trailers: dict[str, str]) -> None:
        if trailers and not self._trailer:
            raise InvalidRequest("Trailing headers need a STREAMING-*-TRAILER payload mode.")
        if self._declared and set(trailers) != self._declared:
            raise InvalidRequest("The trailing headers do not match x-amz-trailer.")
        for name, value in trailers.items():
            algorithm = algorithm_from_header(name)
            if algorithm is not None and not is_valid_b64(algorithm, value):
                raise InvalidRequest(f"Value for {name} trailing header is invalid.")


def _parse_chunk_header(line: bytes, *, signed: bool) -> tuple[int, str]:
    """(data size, chunk signature) of "<hex-size>[;chunk-signature=<sig>]"."""
    size_text, _, extension = line.partition(b";")
    if not _CHUNK_SIZE.fullmatch(size_text):
        raise InvalidRequest("An aws-chunked chunk size is malformed.")
    if not signed:
        return int(size_text, 16), ""
    name, sep, value = extension.partition(b"=")
    if name.strip() != b"chunk-signature" or not sep:
        raise InvalidRequest("An aws-chunked chunk has no chunk-signature.")
    return int(size_text, 16), value.strip().decode("latin-1")
