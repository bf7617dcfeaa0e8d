"""Encryption of access-key secrets at rest (AES-256-GCM with the cluster key).

Rules:
- The cluster key is 32 bytes; it never appears in a repr, a log line or an error.
- Each secret gets a fresh 96-bit random nonce; the stored blob is nonce || ciphertext+tag.
- The access key id is the associated data, so a blob copied onto another key's row
  fails to decrypt instead of handing out the wrong secret.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kurastore.metadata.errors import MetadataError

KEY_BYTES = 32
NONCE_BYTES = 12
_BLOB_VERSION = b"\x01"  # leading byte: lets a later key rotation tell blobs apart


class SecretBox:
    """Seals and opens access-key secrets with one cluster key."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
            raise ValueError(f"the secret key must be {KEY_BYTES} bytes")
        self._aead = AESGCM(bytes(key))

    def __repr__(self) -> str:
        return "SecretBox(<hidden>)"

    def seal(self, access_key: str, secret: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode("utf-8"), access_key.encode("utf-8"))
        return _BLOB_VERSION + nonce + sealed

    def open(self, access_key: str, blob: bytes) -> str:
        """Raises MetadataError if the blob was not sealed by this key for this access key."""
        if blob[:1] != _BLOB_VERSION:
            raise MetadataError(f"access key {access_key}: unknown secret format")
        nonce = blob[1 : 1 + NONCE_BYTES]
        try:
            clear = self._aead.decrypt(nonce, blob[1 + NONCE_BYTES :], access_key.encode("utf-8"))
        except InvalidTag:
            raise MetadataError(
                f"access key {access_key}: secret does not decrypt (wrong cluster key?)"
            ) from None
        return clear.decode("utf-8")
