"""Bucket lifecycle rules, protocol-neutral: which rule applies to a version and
when it expires. The S3 adapter (s3/lifecycle.py) turns the XML into the rule
form below and answers x-amz-expiration with `current_expiry`; the maintenance
worker (maintenance/lifecycle.py) acts on the same answers.

A rule, as kept in the bucket's settings under "lifecycle" (a list, JSON-able):
    {"id": str, "status": "Enabled" | "Disabled",
     "prefix": str | None,                       # the legacy top-level Prefix
     "filter": None | {"form": "empty" | "prefix" | "tag" | "gt" | "lt" | "and" | "flat",
                       "prefix": str, "tags": [[key, value], ...],
                       "gt": int | None, "lt": int | None},
     "expiration": None | {"days": int} | {"date": float} | {"delete_marker": True},
     "noncurrent": None | {"days": int, "newer": int | None},
     "abort_days": int | None}

Rules (AWS's): a rule applies to a version when its key starts with the prefix,
the version carries every tag of the filter and its size lies strictly between
the size bounds. Expiry by days is counted from the version's creation (for a
noncurrent version, from when it became noncurrent: its successor's creation)
and rounded up to the next midnight UTC; expiry by date is that date. Disabled
rules apply to nothing. When several rules expire a version, the earliest wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kurastore.metadata import ObjectVersion

SETTINGS_KEY = "lifecycle"
DAY_S = 86_400

Rule = Mapping[str, Any]


def rules_of(settings: Mapping[str, Any]) -> list[Rule]:
    rules = settings.get(SETTINGS_KEY)
    return list(rules) if isinstance(rules, list) else []


def rule_prefix(rule: Rule) -> str:
    """The key prefix a rule covers ("" for the whole bucket)."""
    flt = rule.get("filter")
    if flt:
        return str(flt.get("prefix") or "")
    return str(rule.get("prefix") or "")


def applies(rule: Rule, key: str, size: int, tags: Mapping[str, str]) -> bool:
    if rule.get("status") != "Enabled" or not key.startswith(rule_prefix(rule)):
        return False
    flt = rule.get("filter") or {}
    for tag_key, tag_value in flt.get("tags") or ():
        if tags.get(tag_key) != tag_value:
            return False
    if flt.get("gt") is not None and not size > flt["gt"]:
        return False
    return not (flt.get("lt") is not None and not size < flt["lt"])


def uses_tags_or_size(rule: Rule) -> bool:
    flt = rule.get("filter") or {}
    return bool(flt.get("tags")) or flt.get("gt") is not None or flt.get("lt") is not None


def after_days(start: float, days: int, day_s: float = DAY_S) -> float:
    """`days` after `start`, rounded up to the next midnight UTC (S3's rule). A
    shortened day (`day_s`, to try rules out, as RGW's lc debug interval) has no
    midnight: it counts from `start` exactly."""
    if day_s < DAY_S:
        return start + days * day_s
    return (int((start + days * day_s) // day_s) + 1) * day_s


def current_expiry(
    rules: Sequence[Rule], version: ObjectVersion, day_s: float = DAY_S
) -> tuple[float, str] | None:
    """(when, rule id) the current version `version` expires, or None."""
    best: tuple[float, str] | None = None
    for rule in rules:
        expiration = rule.get("expiration") or {}
        if "days" in expiration:
            when = after_days(version.last_modified, int(expiration["days"]), day_s)
        elif "date" in expiration:
            when = float(expiration["date"])
        else:
            continue
        if not applies(rule, version.key, version.size, version.tags):
            continue
        if best is None or when < best[0]:
            best = (when, str(rule.get("id", "")))
    return best


def noncurrent_expiry(
    rules: Sequence[Rule], version: ObjectVersion, noncurrent_since: float, newer: int,
    day_s: float = DAY_S,
) -> float | None:
    """When a noncurrent version expires: it became noncurrent at `noncurrent_since`
    and `newer` noncurrent versions of its key are newer than it."""
    best: float | None = None
    for rule in rules:
        noncurrent = rule.get("noncurrent")
        if not noncurrent or not applies(rule, version.key, version.size, version.tags):
            continue
        keep = noncurrent.get("newer")
        if keep is not None and newer < int(keep):
            continue
        when = after_days(noncurrent_since, int(noncurrent["days"]), day_s)
        best = when if best is None else min(best, when)
    return best


def lone_marker_expired(
    rules: Sequence[Rule], marker: ObjectVersion, now: float, day_s: float = DAY_S
) -> bool:
    """Whether a delete marker with no older version left goes: at once under an
    Enabled rule with ExpiredObjectDeleteMarker covering it, or once it is as old as
    a covering rule's expiration in days (S3 treats it as the object's expiry)."""
    for rule in rules:
        expiration = rule.get("expiration") or {}
        if rule.get("status") != "Enabled" or uses_tags_or_size(rule):
            continue
        if not marker.key.startswith(rule_prefix(rule)):
            continue
        if expiration.get("delete_marker"):
            return True
        if "days" in expiration and (
            after_days(marker.last_modified, int(expiration["days"]), day_s) <= now
        ):
            return True
    return False


def abort_after(
    rules: Sequence[Rule], key: str, initiated: float, day_s: float = DAY_S
) -> float | None:
    """When an incomplete multipart upload of `key` is aborted, or None."""
    best: float | None = None
    for rule in rules:
        days = rule.get("abort_days")
        if days is None or rule.get("status") != "Enabled":
            continue
        if not key.startswith(rule_prefix(rule)) or uses_tags_or_size(rule):
            continue
        when = after_days(initiated, int(days), day_s)
        best = when if best is None else min(best, when)
    return best
