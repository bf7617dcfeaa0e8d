"""The contract between protocol adapters (S3, Swift) and the object service.

Adapters parse the wire into these values, call `ObjectService` (service.py)
and render what comes back. Nothing here knows HTTP or XML. Domain errors are
in errors.py (re-exporting the metadata ones adapters need to map).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

from kurastore.metadata import ObjectVersion


@dataclass(frozen=True)
class BodyDigest:
    """What the service computed over the bytes it actually received."""

    size: int
    md5: bytes  # raw 16-byte digest
    checksums: Mapping[str, str]  # algorithm -> base64, for the algorithms asked for


# Called after the whole body was read and before the commit. It may raise (for
# example the S3 adapter's BadDigest); the write is then aborted and nothing is
# visible. Trailer checksums of aws-chunked bodies are known only at that moment.
BodyCheck = Callable[[BodyDigest], None]


@dataclass(frozen=True)
class WriteConditions:
    if_match: str | None = None  # etag without quotes; "*" = must exist
    if_none_match: str | None = None  # "*" = must not exist; an etag = must not be current


SSE_S3 = "SSE-S3"
SSE_C = "SSE-C"
SSE_KMS = "SSE-KMS"
SSE_MODES = (SSE_S3, SSE_C, SSE_KMS)


@dataclass(frozen=True)
class EncryptionSpec:
    """What a write asks for. `customer_key` is the raw 32-byte SSE-C key."""

    mode: str
    customer_key: bytes | None = field(default=None, repr=False)
    kms_key_id: str = ""
    kms_context: str = ""  # the client's x-amz-server-side-encryption-context (base64 JSON)
    bucket_key: bool = False  # echoed only: every object has its own data key anyway
    dsse: bool = False  # aws:kms:dsse asked (echoed; one layer of encryption here too)

    def __post_init__(self) -> None:
        if self.mode not in SSE_MODES:
            raise ValueError(f"unknown encryption mode {self.mode!r}")
        if (self.mode == SSE_C) != (self.customer_key is not None):
            raise ValueError("a customer key goes with SSE-C, and only with it")
        if self.customer_key is not None and len(self.customer_key) != 32:
            raise ValueError("a customer key is 32 bytes")


@dataclass(frozen=True)
class PutOptions:
    owner: str = ""
    content_type: str = "binary/octet-stream"
    headers: Mapping[str, str] = field(default_factory=dict)  # lowercase standard headers to store
    user_meta: Mapping[str, str] = field(default_factory=dict)
    tags: Mapping[str, str] = field(default_factory=dict)
    content_length: int | None = None  # decoded body length when the client stated it
    checksum_algorithms: tuple[str, ...] = ()  # compute these on the way through
    check: BodyCheck | None = None
    conditions: WriteConditions = WriteConditions()
    storage_class: str = "STANDARD"
    expires_at: float | None = None
    # CreateMultipartUpload's x-amz-checksum-type ("COMPOSITE" or "FULL_OBJECT"); ""
    # = S3's default for the algorithm (FULL_OBJECT for CRC64NVME, else COMPOSITE).
    checksum_type: str = ""
    encryption: EncryptionSpec | None = None  # None: stored in clear


@dataclass(frozen=True)
class ReadConditions:
    if_match: str | None = None  # raw header value (may list etags, may be "*")
    if_none_match: str | None = None
    if_modified_since: float | None = None  # Unix seconds
    if_unmodified_since: float | None = None


@dataclass(frozen=True)
class ByteRange:
    """A requested range: bytes start..end inclusive; start None = suffix of `end`
    bytes; end None = to the end of the object."""

    start: int | None
    end: int | None


class ObjectReader:
    """An opened object: every clean error (not found, range, precondition) was
    raised before this exists. Iterating yields the bytes of [start, end]."""

    version: ObjectVersion
    start: int  # first byte sent (inclusive)
    end: int  # last byte sent (inclusive); end = start - 1 for an empty body
    is_partial: bool  # a Range or partNumber was applied (206)
    parts_count: int  # number of parts of a multipart object, else 1

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def __aiter__(self) -> AsyncIterator[bytes | memoryview]:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Stops prefetching; safe to call more than once."""


@dataclass(frozen=True)
class CopySource:
    bucket: str
    key: str
    version_id: str | None = None
    conditions: ReadConditions = ReadConditions()  # x-amz-copy-source-if-*
    byte_range: ByteRange | None = None  # UploadPartCopy only
    customer_key: bytes | None = field(default=None, repr=False)  # SSE-C key of the source


@dataclass(frozen=True)
class CompletedPart:
    part_number: int
    etag: str  # no quotes
    checksums: Mapping[str, str] = field(default_factory=dict)  # as sent in CompleteMultipartUpload
