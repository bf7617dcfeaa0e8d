"""Domain errors of the object service. Protocol adapters map each one (and the
metadata errors re-exported here) to their wire errors in one table each.

    ObjectServiceError
    ├── InvalidRange            (.size: the object's size, for Content-Range)
    │   └── InvalidPartNumber   (a partNumber beyond the object's parts)
    ├── NotModified             (.version: for ETag/Last-Modified on the 304)
    ├── InvalidPart             (a completed part is missing or its etag differs)
    ├── InvalidPartOrder
    ├── EntityTooSmall          (a non-final part below 5 MiB)
    ├── EntityTooLarge
    ├── IncompleteBody          (fewer bytes than the stated length)
    ├── InvalidArgument         (a value out of range; message says which)
    │   └── EncryptionError     (server-side encryption: KeyRequired, KeyMismatch,
    │                            KeyNotExpected, EncryptionUnavailable)
    ├── QuorumNotReached        (too few pods answered: retry later)
    └── DataLost                (fewer than k good blocks of a stripe exist)
        └── DataUnavailable     (...because pods did not answer: may come back)
Metadata errors (BucketNotFound, ObjectNotFound, PreconditionFailed, ...) pass
through unchanged.
"""

from __future__ import annotations

from typing import Any

from kurastore.metadata.errors import (  # noqa: F401  (re-exported for adapters)
    AccessKeyNotFound,
    BucketAlreadyExists,
    BucketAlreadyOwnedByYou,
    BucketNotEmpty,
    BucketNotFound,
    ConditionalConflict,
    MetadataError,
    MetadataUnavailable,
    ObjectNotFound,
    PreconditionFailed,
    UploadNotFound,
    UserExists,
    UserNotFound,
    VersionNotFound,
    VersionProtected,
)


class ObjectServiceError(Exception):
    pass


class InvalidRange(ObjectServiceError):
    def __init__(self, size: int) -> None:
        super().__init__(f"range not satisfiable for an object of {size} bytes")
        self.size = size


class NotModified(ObjectServiceError):
    def __init__(self, version: Any) -> None:
        super().__init__("not modified")
        self.version = version


class InvalidPart(ObjectServiceError):
    pass


class InvalidPartOrder(ObjectServiceError):
    pass


class EntityTooSmall(ObjectServiceError):
    pass


class EntityTooLarge(ObjectServiceError):
    pass


class IncompleteBody(ObjectServiceError):
    pass


class InvalidArgument(ObjectServiceError):
    pass


class QuorumNotReached(ObjectServiceError):
    pass


class DataLost(ObjectServiceError):
    pass


class DataUnavailable(DataLost):
    """Too few blocks of a stripe arrived because pods did not answer: the data may be
    intact and readable again once they are back (a retry is worth it)."""


class InvalidPartNumber(InvalidRange):
    """partNumber beyond the object's parts (S3 answers 416 InvalidPartNumber)."""


class EncryptionError(InvalidArgument):
    """Base of the encryption errors adapters map (all are client errors)."""


class KeyRequired(EncryptionError):
    """The object is SSE-C encrypted and the request gave no customer key."""


class KeyMismatch(EncryptionError):
    """The customer key given does not open the object's data key."""


class KeyNotExpected(EncryptionError):
    """A customer key was given for an object that is not SSE-C encrypted."""


class EncryptionUnavailable(EncryptionError):
    """Encryption was asked of a service started without a cluster key."""
