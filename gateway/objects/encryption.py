"""Server-side encryption of object data: SSE-S3, SSE-C and SSE-KMS.

Rules:
- Every encrypted object (or multipart upload) gets its own random 256-bit data key.
  The data key is stored only sealed (AES-256-GCM) in the version record, under a
  key-encryption key (KEK) that depends on the mode:
    SSE-S3   HKDF of the cluster key;
    SSE-KMS  HKDF of the cluster key and the KMS key id (the built-in keyring: one
             KEK per key id; the encryption context is bound as associated data);
    SSE-C    HKDF of the customer's key, which is never stored (only its MD5, which
             S3 echoes back). A wrong customer key fails the GCM tag: KeyMismatch.
  The object id (and the mode and key id) are the associated data, so a sealed key
  copied onto another record does not open.
- Data is encrypted with AES-256-CTR after hashing (MD5/ETag and x-amz-checksums are
  of the plaintext) and before erasure coding, so shards only ever hold ciphertext
  and the ciphertext is exactly as long as the plaintext: stripes, ranges and sizes
  work unchanged. The counter block of byte `offset` of a part is
  nonce(part label) || offset // 16, so any range decrypts on its own. A part label
  (its shard tag, or "inline") is unique within an object, and the data key is unique
  per object or upload, so no key stream is ever used twice.
- Bitrot is caught by the frames' xxhash as for clear data; CTR is not a MAC.
- Nothing here logs or repr()s a key.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kurastore.gateway.objects.api import SSE_C, SSE_KMS, SSE_S3, EncryptionSpec, ObjectReader
from kurastore.gateway.objects.errors import (
    EncryptionUnavailable,
    KeyMismatch,
    KeyNotExpected,
    KeyRequired,
)
from kurastore.metadata import ObjectVersion

KEY_BYTES = 32
INLINE_LABEL = "inline"
_NONCE_BYTES = 12
_FORMAT = "1"
_KMS_KEKS_CACHED = 1024  # derived KMS key-encryption keys kept, at most


def key_md5(customer_key: bytes) -> str:
    """Base64 MD5 of a customer key, as S3 carries it in ...-customer-key-MD5."""
    return base64.b64encode(hashlib.md5(customer_key).digest()).decode("ascii")


def _hkdf(secret: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(secret)


class Keyring:
    """Seals and opens per-object data keys. Built from the cluster key."""

    __slots__ = ("_cluster_key", "_kms_keks", "_s3_kek")

    def __init__(self, cluster_key: bytes) -> None:
        if len(cluster_key) != KEY_BYTES:
            raise ValueError("the cluster key must be 32 bytes")
        self._cluster_key = bytes(cluster_key)
        self._s3_kek = AESGCM(_hkdf(self._cluster_key, b"kurastore sse-s3 kek v1"))
        self._kms_keks: dict[str, AESGCM] = {}

    def __repr__(self) -> str:
        return "Keyring(<hidden>)"

    def _kek(self, mode: str, kms_key_id: str, customer_key: bytes | None) -> AESGCM:
        if mode == SSE_S3:
            return self._s3_kek
        if mode == SSE_KMS:
            kek = self._kms_keks.get(kms_key_id)
            if kek is None:
                if len(self._kms_keks) >= _KMS_KEKS_CACHED:  # clients choose key ids
                    self._kms_keks.clear()
                info = b"kurastore kms kek v1:" + kms_key_id.encode("utf-8")
                kek = self._kms_keks[kms_key_id] = AESGCM(_hkdf(self._cluster_key, info))
            return kek
        assert customer_key is not None
        return AESGCM(_hkdf(customer_key, b"kurastore sse-c kek v1"))

    @staticmethod
    def _aad(object_id: str, mode: str, kms_key_id: str, context: str) -> bytes:
        return "\n".join(("kurastore-sse", _FORMAT, object_id, mode, kms_key_id, context)).encode()

    def seal_new(self, spec: EncryptionSpec, object_id: str) -> tuple[bytes, dict[str, str]]:
        """A fresh data key for `object_id` and the record that keeps it sealed."""
        data_key = os.urandom(KEY_BYTES)
        nonce = os.urandom(_NONCE_BYTES)
        kek = self._kek(spec.mode, spec.kms_key_id, spec.customer_key)
        aad = self._aad(object_id, spec.mode, spec.kms_key_id, spec.kms_context)
        sealed = nonce + kek.encrypt(nonce, data_key, aad)
        record = {"mode": spec.mode, "format": _FORMAT,
                  "sealed": base64.b64encode(sealed).decode("ascii")}
        if spec.mode == SSE_KMS:
            record["kms_key_id"] = spec.kms_key_id
            if spec.kms_context:
                record["kms_context"] = spec.kms_context
            if spec.bucket_key:
                record["bucket_key"] = "true"
            if spec.dsse:
                record["dsse"] = "true"
        if spec.customer_key is not None:
            record["key_md5"] = key_md5(spec.customer_key)
        return data_key, record

    def open(
        self, record: Mapping[str, str], object_id: str, customer_key: bytes | None
    ) -> bytes:
        """The data key of an encrypted record. KeyRequired / KeyMismatch for SSE-C
        without the key or with another one."""
        mode = record["mode"]
        if mode == SSE_C:
            if customer_key is None:
                raise KeyRequired(
                    "The object was stored using a form of Server Side Encryption. The correct "
                    "parameters must be provided to retrieve the object.")
            if key_md5(customer_key) != record.get("key_md5"):
                raise KeyMismatch("The provided encryption key does not match the one used "
                                  "to encrypt the object.")
        kms_key_id = record.get("kms_key_id", "")
        aad = self._aad(object_id, mode, kms_key_id, record.get("kms_context", ""))
        sealed = base64.b64decode(record["sealed"])
        try:
            return self._kek(mode, kms_key_id, customer_key).decrypt(
                sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], aad)
        except InvalidTag:
            raise KeyMismatch("The provided encryption key does not match the one used "
                              "to encrypt the object.") from None


@dataclass(frozen=True)
class PartKey:
    """The data key and the label of the part being written."""

    data_key: bytes = field(repr=False)
    label: str


def _keyring(keyring: Keyring | None) -> Keyring:
    if keyring is None:
        raise EncryptionUnavailable("Server-side encryption needs the cluster key, which this "
                                    "gateway was started without.")
    return keyring


def new_data_key(
    keyring: Keyring | None, spec: EncryptionSpec | None, object_id: str
) -> tuple[bytes | None, dict[str, str]]:
    """(data key, sealed record) for a new object or upload; (None, {}) in clear."""
    if spec is None:
        return None, {}
    return _keyring(keyring).seal_new(spec, object_id)


def data_key_of(
    keyring: Keyring | None, record: Mapping[str, str], object_id: str,
    customer_key: bytes | None,
) -> bytes | None:
    """The data key of a stored object or upload (None when stored in clear), checking
    the customer key the request carries against it."""
    if not record:
        if customer_key is not None:
            raise KeyNotExpected("The encryption parameters are not applicable to this object.")
        return None
    if customer_key is not None and record.get("mode") != SSE_C:
        raise KeyNotExpected("The encryption parameters are not applicable to this object.")
    return _keyring(keyring).open(record, object_id, customer_key)


def keystream_xor(data_key: bytes, label: str, offset: int, data: bytes | memoryview) -> bytes:
    """`data` (bytes offset.. of the part named `label`) encrypted or decrypted: CTR
    is its own inverse. Positional, so stripes may be processed in any order."""
    nonce = hashlib.blake2b(label.encode("utf-8"), digest_size=8).digest()
    block, skip = divmod(offset, 16)
    cipher = Cipher(algorithms.AES(data_key), modes.CTR(nonce + block.to_bytes(8, "big")))
    xor = cipher.encryptor()
    if skip:
        xor.update(bytes(skip))
    return xor.update(data) + xor.finalize()


class DecryptingReader(ObjectReader):
    """An ObjectReader over an encrypted version: the inner reader's ciphertext, in
    the clear. Pieces come in order and contiguous from `start`; each is decrypted
    with the key stream of the part it belongs to."""

    def __init__(self, inner: ObjectReader, data_key: bytes) -> None:
        self._inner = inner
        self._key = data_key
        self.version: ObjectVersion = inner.version
        self.start = inner.start
        self.end = inner.end
        self.is_partial = inner.is_partial
        self.parts_count = inner.parts_count

    def __aiter__(self) -> AsyncIterator[bytes | memoryview]:
        return self._iterate()

    def _spans(self) -> list[tuple[int, int, str]]:
        """(first byte, one past the last, label) of each part, in object order."""
        v = self.version
        if v.inline is not None or not v.parts:
            return [(0, v.size, INLINE_LABEL)]
        spans, offset = [], 0
        for part in v.parts:
            spans.append((offset, offset + part.size, part.shard_tag))
            offset += part.size
        return spans

    async def _iterate(self) -> AsyncIterator[bytes | memoryview]:
        spans = self._spans()
        pos = self.start
        index = 0
        async for piece in self._inner:
            view = memoryview(piece)
            while view.nbytes:
                while spans[index][1] <= pos:
                    index += 1
                first, past, label = spans[index]
                take = min(view.nbytes, past - pos)
                yield keystream_xor(self._key, label, pos - first, view[:take])
                pos += take
                view = view[take:]

    async def aclose(self) -> None:
        await self._inner.aclose()
