"""S3 server-side encryption headers: what a request asks for, what an answer says.

Rules (Amazon S3 API reference, "Protecting data with server-side encryption"):
- A write asks for SSE-S3 (`x-amz-server-side-encryption: AES256`), SSE-KMS
  (`aws:kms` or `aws:kms:dsse`, with an optional key id, encryption context and
  bucket-key flag) or SSE-C (the three `...-customer-*` headers). SSE-C together with
  `x-amz-server-side-encryption`, or KMS headers without `aws:kms`, are refused.
- A write that asks for nothing gets the bucket's default encryption, if it has one:
  the object service applies `bucket_default` to writes of every protocol.
- Reads (GET, HEAD, and a copy's source through the `x-amz-copy-source-` variants)
  carry only an SSE-C key; `x-amz-server-side-encryption` on a read is refused.
- Every error is 400 InvalidArgument (or InvalidEncryptionAlgorithmError for an SSE-C
  algorithm other than AES256), with AWS's wording, and happens before any byte is read.
- The customer key never reaches a log line: it lives only in EncryptionSpec, whose
  repr hides it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from kurastore.gateway.objects.api import SSE_C, SSE_KMS, SSE_S3, EncryptionSpec
from kurastore.gateway.objects.encryption import key_md5
from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3.bucket_encryption import KMS_ALGORITHMS, default_encryption

SSE = "x-amz-server-side-encryption"
CUSTOMER_ALGORITHM = "x-amz-server-side-encryption-customer-algorithm"
CUSTOMER_KEY = "x-amz-server-side-encryption-customer-key"
CUSTOMER_KEY_MD5 = "x-amz-server-side-encryption-customer-key-md5"
KMS_KEY_ID = "x-amz-server-side-encryption-aws-kms-key-id"
KMS_CONTEXT = "x-amz-server-side-encryption-context"
BUCKET_KEY = "x-amz-server-side-encryption-bucket-key-enabled"
COPY_SOURCE = "x-amz-copy-source-"  # replaces "x-amz-" in the SSE-C names of a copy's source
# The key an SSE-KMS request without a key id is encrypted under (AWS: the account's
# AWS managed key for S3, named by this alias).
DEFAULT_KMS_KEY = "aws/s3"


def customer_key(headers: Mapping[str, str], prefix: str = "") -> bytes | None:
    """The SSE-C key of a request (prefix COPY_SOURCE: of a copy's source), checked
    against its MD5; None when the request carries none of the three headers."""
    def named(name: str) -> str:
        return prefix + name.removeprefix("x-amz-") if prefix else name

    algorithm = headers.get(named(CUSTOMER_ALGORITHM))
    encoded = headers.get(named(CUSTOMER_KEY))
    md5 = headers.get(named(CUSTOMER_KEY_MD5))
    if algorithm is None and encoded is None and md5 is None:
        return None
    if algorithm is None:
        raise s3e.InvalidArgument(
            "Requests specifying Server Side Encryption with Customer provided keys must "
            "provide a valid encryption algorithm.")
    if algorithm != "AES256":
        raise s3e.InvalidEncryptionAlgorithmError(
            "The encryption request you specified is not valid. The valid value is AES256.")
    if encoded is None:
        raise s3e.InvalidArgument(
            "Requests specifying Server Side Encryption with Customer provided keys must "
            "provide an appropriate secret key.")
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise s3e.InvalidArgument("The secret key was invalid for the specified algorithm.")
    if md5 is None:
        raise s3e.InvalidArgument(
            "Requests specifying Server Side Encryption with Customer provided keys must "
            "provide the client calculated MD5 of the secret key.")
    if md5 != key_md5(key):
        raise s3e.InvalidArgument(
            "The calculated MD5 hash of the key did not match the hash that was provided.")
    return key


def _kms_context(value: str | None) -> str:
    """x-amz-server-side-encryption-context: base64 of a JSON object of strings."""
    if value is None:
        return ""
    try:
        parsed = json.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        parsed = None
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        raise s3e.InvalidArgument("The encryption context must be base64 of a JSON object.")
    return value


def write_request(headers: Mapping[str, str]) -> EncryptionSpec | None:
    """The encryption a write asks for; None: none (the bucket's default may apply)."""
    sse = headers.get(SSE)
    key = customer_key(headers)
    kms_key = headers.get(KMS_KEY_ID)
    context = headers.get(KMS_CONTEXT)
    if key is not None:
        if sse is not None or kms_key is not None:
            raise s3e.InvalidArgument(
                "Server Side Encryption with Customer provided key is incompatible with the "
                "encryption method specified")
        return EncryptionSpec(SSE_C, customer_key=key)
    if sse is None:
        if kms_key is not None or context is not None:
            raise s3e.InvalidArgument(
                "Server Side Encryption with AWS KMS managed key requires HTTP header "
                "x-amz-server-side-encryption : aws:kms")
        return None
    if sse == "AES256":
        if kms_key is not None or context is not None:
            raise s3e.InvalidArgument(
                "Server Side Encryption with AWS KMS managed key requires HTTP header "
                "x-amz-server-side-encryption : aws:kms")
        return EncryptionSpec(SSE_S3)
    if sse in KMS_ALGORITHMS:
        if kms_key is not None and not kms_key.strip():
            raise s3e.InvalidArgument("Invalid KMS key id: it must not be empty.")
        return EncryptionSpec(
            SSE_KMS, kms_key_id=kms_key or DEFAULT_KMS_KEY, kms_context=_kms_context(context),
            bucket_key=headers.get(BUCKET_KEY, "").lower() == "true", dsse=sse == "aws:kms:dsse",
        )
    raise s3e.InvalidArgument("The encryption method specified is not supported")


def bucket_default(settings: Mapping[str, Any]) -> EncryptionSpec | None:
    """A bucket's default encryption (PutBucketEncryption), from its settings, as a spec."""
    config = default_encryption(settings)
    if config is None:
        return None
    if config.get("algorithm") in KMS_ALGORITHMS:
        return EncryptionSpec(SSE_KMS, kms_key_id=config.get("kms_key_id") or DEFAULT_KMS_KEY,
                              bucket_key=bool(config.get("bucket_key_enabled")),
                              dsse=config.get("algorithm") == "aws:kms:dsse")
    return EncryptionSpec(SSE_S3)


def read_key(headers: Mapping[str, str]) -> bytes | None:
    """The SSE-C key of a GET or HEAD; x-amz-server-side-encryption on a read is an error."""
    if SSE in headers:
        raise s3e.InvalidArgument(
            "x-amz-server-side-encryption header is not supported for this operation.")
    return customer_key(headers)


def response_headers(record: Mapping[str, str]) -> dict[str, str]:
    """What an answer about an encrypted object (or upload) says of its encryption."""
    mode = record.get("mode") if record else None
    if mode == SSE_S3:
        return {SSE: "AES256"}
    if mode == SSE_KMS:
        algorithm = "aws:kms:dsse" if record.get("dsse") == "true" else "aws:kms"
        out = {SSE: algorithm, KMS_KEY_ID: record.get("kms_key_id", DEFAULT_KMS_KEY)}
        if record.get("bucket_key") == "true":
            out[BUCKET_KEY] = "true"
        return out
    if mode == SSE_C:
        return {CUSTOMER_ALGORITHM: "AES256", CUSTOMER_KEY_MD5: record.get("key_md5", "")}
    return {}
