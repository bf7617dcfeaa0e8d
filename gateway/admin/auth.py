"""Admin API authentication: an HMAC over the request, keyed by an admin user's
S3 secret, so `kurastore admin` and the operator need no SigV4 machinery.

Header:  Authorization: KURA-HMAC-SHA256 Credential=<access key>,Timestamp=<unix s>,Signature=<hex>
Signed:  METHOD \\n path?query \\n timestamp \\n sha256-hex(body)
Requests older or newer than MAX_SKEW_S are refused; the compare is constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SCHEME = "KURA-HMAC-SHA256"
MAX_SKEW_S = 300.0


def sign(secret: str, method: str, path_qs: str, timestamp: int, body: bytes) -> str:
    message = "\n".join(
        [method.upper(), path_qs, str(timestamp), hashlib.sha256(body).hexdigest()]
    ).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def authorization_header(
    access_key: str, secret: str, method: str, path_qs: str, body: bytes, now: float | None = None
) -> str:
    ts = int(time.time() if now is None else now)
    sig = sign(secret, method, path_qs, ts, body)
    return f"{SCHEME} Credential={access_key},Timestamp={ts},Signature={sig}"


def parse_authorization(header: str) -> tuple[str, int, str] | None:
    """(access key, timestamp, signature) or None when malformed."""
    scheme, _, rest = header.partition(" ")
    if scheme != SCHEME:
        return None
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            return None
        fields[name] = value
    try:
        return fields["Credential"], int(fields["Timestamp"]), fields["Signature"]
    except (KeyError, ValueError):
        return None


def verify(
    secret: str, method: str, path_qs: str, timestamp: int, body: bytes, signature: str,
    now: float | None = None,
) -> bool:
    current = time.time() if now is None else now
    if abs(current - timestamp) > MAX_SKEW_S:
        return False
    expected = sign(secret, method, path_qs, timestamp, body)
    return hmac.compare_digest(expected, signature)
