"""Object Lock state of a version: retention (mode and retain-until date) and legal
hold, and whether they protect the version from removal.

The state is kept in the version's stored headers under the names S3 answers
them with on GET and HEAD, so it travels with the version and needs nothing of
its own in the store:
    x-amz-object-lock-mode               "GOVERNANCE" | "COMPLIANCE"
    x-amz-object-lock-retain-until-date  ISO 8601, UTC, milliseconds
    x-amz-object-lock-legal-hold         "ON" | "OFF"

Rules (S3's): a version under legal hold cannot be removed; one whose retention
date has not passed cannot be removed either, except in GOVERNANCE mode by a
caller who asks to bypass it. Delete markers and new versions stay allowed: the
lock protects versions, not keys. Everyone who removes versions (DeleteObject
with a version id, DeleteObjects, the lifecycle worker) asks `protected`.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping

from kurastore.metadata import ObjectVersion

MODE = "x-amz-object-lock-mode"
UNTIL = "x-amz-object-lock-retain-until-date"
LEGAL_HOLD = "x-amz-object-lock-legal-hold"
MODES = ("GOVERNANCE", "COMPLIANCE")
HEADERS = (MODE, UNTIL, LEGAL_HOLD)


def format_date(ts: float) -> str:
    ms = round(ts * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def parse_date(text: str) -> float:
    """Unix seconds of an ISO 8601 date-time (UTC when no zone is given); ValueError."""
    when = datetime.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def retention(headers: Mapping[str, str]) -> tuple[str, float] | None:
    """(mode, retain-until seconds) of a version's stored headers, or None."""
    mode, until = headers.get(MODE), headers.get(UNTIL)
    if mode not in MODES or not until:
        return None
    try:
        return mode, parse_date(until)
    except ValueError:
        return None


def legal_hold(headers: Mapping[str, str]) -> bool:
    return headers.get(LEGAL_HOLD) == "ON"


def protected(version: ObjectVersion, *, bypass_governance: bool = False,
              now: float | None = None) -> bool:
    """Whether removing this version must be refused."""
    if version.is_delete_marker:
        return False
    if legal_hold(version.headers):
        return True
    held = retention(version.headers)
    if held is None:
        return False
    mode, until = held
    if until <= (time.time() if now is None else now):
        return False
    return not (mode == "GOVERNANCE" and bypass_governance)


def without_lock(headers: Mapping[str, str]) -> dict[str, str]:
    """Stored headers minus the lock state (a copy gets its own, never the source's)."""
    return {k: v for k, v in headers.items() if k not in HEADERS}
