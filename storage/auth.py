"""Proof of the cluster secret on every pod request.

Header: `X-Kura-Auth: <unix-seconds>.<hex hmac-sha256(secret, METHOD "\\n" path_qs "\\n" ts)>`
where `path_qs` is the raw request target exactly as sent (path and query, still
percent-encoded) and METHOD is upper case.

Rules:
- The secret never leaves this module in clear: not in logs, reprs or error messages.
- Comparison is constant time (`hmac.compare_digest`).
- A timestamp more than `max_skew_s` (300 s by default) away from the pod's clock is refused,
  which bounds replay of a captured request to that window and to the same method and
  target. The body is not covered: the pod network is trusted not to rewrite bodies, and
  frames carry their own checksums.
- Missing or malformed header -> AuthMissing (401); wrong signature or stale -> AuthRejected
  (403). The reason text is safe to log.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
import time

__all__ = ["MAX_SKEW_S", "AuthMissing", "AuthRejected", "check_request", "sign_request"]

MAX_SKEW_S = 300.0

_HEADER = re.compile(r"([0-9]{1,12})\.([0-9a-f]{64})", re.ASCII)


class AuthMissing(Exception):
    """No usable auth header: answer 401."""


class AuthRejected(Exception):
    """An auth header that does not prove the secret (or is stale): answer 403."""


@functools.lru_cache(maxsize=8)
def _keyed(secret: bytes) -> hmac.HMAC:
    """An HMAC already keyed with `secret`: copying it skips the key setup on every
    request (1.6 against 2.6 us a signature)."""
    return hmac.new(secret, digestmod=hashlib.sha256)


def _digest(secret: bytes, method: str, path_qs: str, ts: str) -> str:
    mac = _keyed(secret).copy()
    mac.update(f"{method.upper()}\n{path_qs}\n{ts}".encode("utf-8", "surrogateescape"))
    return mac.hexdigest()


def sign_request(secret: bytes, method: str, path_qs: str, now: float | None = None) -> str:
    """Return the X-Kura-Auth header value for one request."""
    ts = str(int(time.time() if now is None else now))
    return f"{ts}.{_digest(secret, method, path_qs, ts)}"


def check_request(
    secret: bytes,
    header: str | None,
    method: str,
    path_qs: str,
    *,
    now: float | None = None,
    max_skew_s: float = MAX_SKEW_S,
) -> None:
    """Return if `header` proves `secret` for this request; raise AuthMissing/AuthRejected."""
    if not header:
        raise AuthMissing("missing auth header")
    match = _HEADER.fullmatch(header.strip())
    if match is None:
        raise AuthMissing("malformed auth header")
    ts, mac = match.groups()
    expected = _digest(secret, method, path_qs, ts)
    if not hmac.compare_digest(expected, mac):
        raise AuthRejected("bad signature")
    skew = abs((time.time() if now is None else now) - int(ts))
    if skew > max_skew_s:
        raise AuthRejected(f"stale timestamp (skew {skew:.0f} s)")
