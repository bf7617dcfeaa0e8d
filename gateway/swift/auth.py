"""Swift authentication: TempAuth-style `GET /auth/v1.0` and stateless tokens.

Tokens are self-contained, so any gateway of the cluster checks them without
shared state: "AUTH_tk" + base64url(user_id "\\n" expiry, HMAC-SHA256 of that)
with a key derived from the cluster secret (HMAC(cluster_secret,
"kurastore-swift-token")). Rules:
- The MAC is compared in constant time before anything in the token is used.
- A token past its expiry is refused (401), and so is a token whose user no
  longer exists (a deleted user's tokens die with it).
- Credentials are the S3 ones: X-Auth-User is the access key id, or
  "account:user" where user is an access key id or a user name; X-Auth-Key is
  the secret. The account part before ":" is only a label and is not checked.
- The credential check is pluggable (`Authenticator`): Keystone or another
  identity service can replace TempAuth without touching the token or routes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from typing import TYPE_CHECKING, Protocol

from kurastore.gateway.objects.errors import UserNotFound
from kurastore.gateway.swift.errors import Unauthorized

if TYPE_CHECKING:
    from kurastore.gateway.objects.service import ObjectService

TOKEN_PREFIX = "AUTH_tk"
DEFAULT_LIFETIME_S = 24 * 3600.0
_MAC_BYTES = 32


class TokenSigner:
    """Issues and verifies Swift tokens for one cluster secret."""

    def __init__(self, cluster_secret: bytes, lifetime_s: float = DEFAULT_LIFETIME_S) -> None:
        if lifetime_s <= 0:
            raise ValueError("token lifetime must be positive")
        self._key = hmac.new(cluster_secret, b"kurastore-swift-token", hashlib.sha256).digest()
        self.lifetime_s = lifetime_s

    def issue(self, user_id: str, *, expires_at: float | None = None,
              now: float | None = None) -> str:
        """A token for `user_id`, valid until `expires_at` (default: now + lifetime)."""
        if expires_at is None:
            expires_at = (time.time() if now is None else now) + self.lifetime_s
        payload = f"{user_id}\n{int(expires_at)}".encode()
        mac = hmac.new(self._key, payload, hashlib.sha256).digest()
        return TOKEN_PREFIX + base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")

    def verify(self, token: str, *, now: float | None = None) -> tuple[str, float]:
        """(user_id, expires_at) of a valid token; Unauthorized otherwise."""
        if not token.startswith(TOKEN_PREFIX):
            raise Unauthorized()
        data = token[len(TOKEN_PREFIX):]
        try:
            raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
        except (binascii.Error, ValueError):
            raise Unauthorized() from None
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()
        if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, expected):
            raise Unauthorized()
        user_id, _, expiry = payload.decode(errors="replace").partition("\n")
        try:
            expires_at = float(int(expiry))
        except ValueError:
            raise Unauthorized() from None
        if expires_at <= (time.time() if now is None else now):
            raise Unauthorized()
        return user_id, expires_at


class Authenticator(Protocol):
    """Checks credentials given to /auth/v1.0; returns the user id or raises
    Unauthorized."""

    async def authenticate(self, user: str, key: str) -> str: ...


class TempAuth:
    """The S3 users and keys, spoken the TempAuth way."""

    def __init__(self, service: ObjectService) -> None:
        self._service = service

    async def authenticate(self, user: str, key: str) -> str:
        if not user or not key:
            raise Unauthorized()
        name = user.split(":", 1)[1] if ":" in user else user
        found = await self._service.lookup_secret(name)
        if found is not None:
            secret, user_id = found
            if hmac.compare_digest(secret.encode(), key.encode()):
                return user_id
            raise Unauthorized()
        return await self._by_user_name(name, key)

    async def _by_user_name(self, name: str, key: str) -> str:
        try:
            record = await self._service.get_user_by_name(name)
        except UserNotFound:
            raise Unauthorized() from None
        keys = await self._service.list_access_keys(record.user_id)
        matched = False
        for candidate in keys:  # look at every key: the time taken does not tell which
            if candidate.enabled and hmac.compare_digest(
                candidate.secret_key.encode(), key.encode()
            ):
                matched = True
        if not matched:
            raise Unauthorized()
        return record.user_id
