"""The POST policy of a browser-form upload (PostObject): decode it, then check
the form against it. Pure functions, no I/O and no aiohttp.

A policy is base64 JSON: {"expiration": ISO 8601, "conditions": [...]}, each
condition one of {"field": "value"} (exact match), ["eq", "$field", "value"],
["starts-with", "$field", "prefix"] or ["content-length-range", min, max].

Rules (AWS's behaviour):
- Field names compare case-insensitively; "$bucket" is the bucket of the request.
- An expired policy, a failed condition and a form field no condition covers are
  AccessDenied "Invalid according to Policy: ...". Fields exempt from coverage:
  policy, x-amz-signature, signature, awsaccesskeyid, file and x-ignore-*.
- starts-with "" matches anything; a starts-with on Content-Type checks every
  comma-separated value of the field.
- content-length-range is checked while the file streams (`LengthRange`):
  EntityTooSmall / EntityTooLarge.
- A malformed policy is InvalidPolicyDocument: bad JSON or base64, an expiration
  not in ISO 8601 (date "T" time, with a zone), a simple condition without
  exactly one field, an unknown operation.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from kurastore.gateway.s3 import errors as s3e

EXEMPT_FIELDS = frozenset({"policy", "x-amz-signature", "signature", "awsaccesskeyid", "file"})
_DENIED = "Invalid according to Policy: "
_ISO8601 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


@dataclass(frozen=True)
class Condition:
    """One eq / starts-with condition, on a lowercase field name."""

    op: str  # "eq" | "starts-with"
    field: str
    value: str
    text: str  # the condition as AWS quotes it in the error


@dataclass(frozen=True)
class LengthRange:
    minimum: int = 0
    maximum: int | None = None

    def check_running(self, size: int) -> None:
        """Raise EntityTooLarge as soon as the file passes the maximum."""
        if self.maximum is not None and size > self.maximum:
            raise s3e.EntityTooLarge(
                "Your proposed upload exceeds the maximum allowed size",
                ProposedSize=str(size), MaxSizeAllowed=str(self.maximum),
            )

    def check_final(self, size: int) -> None:
        self.check_running(size)
        if size < self.minimum:
            raise s3e.EntityTooSmall(
                "Your proposed upload is smaller than the minimum allowed size",
                ProposedSize=str(size), MinSizeAllowed=str(self.minimum),
            )


@dataclass(frozen=True)
class Policy:
    expiration: float  # Unix seconds
    conditions: tuple[Condition, ...] = ()
    length: LengthRange = field(default_factory=LengthRange)


def _invalid(message: str) -> s3e.S3Error:
    return s3e.InvalidPolicyDocument(f"Invalid Policy: {message}")


def decode(policy_b64: str) -> Policy:
    """The policy of the form's `policy` field; InvalidPolicyDocument when malformed."""
    try:
        raw = base64.b64decode(policy_b64.strip().encode("ascii"), validate=True)
        doc = json.loads(raw)
    except (binascii.Error, UnicodeError, ValueError):
        raise _invalid("Invalid JSON.") from None
    if not isinstance(doc, dict):
        raise _invalid("Invalid JSON.")
    if "expiration" not in doc:
        raise _invalid("Policy missing expiration.")
    if "conditions" not in doc or not isinstance(doc["conditions"], list):
        raise _invalid("Policy missing conditions.")
    expiration = _parse_time(doc["expiration"])
    conditions: list[Condition] = []
    length = LengthRange()
    for item in doc["conditions"]:
        if isinstance(item, dict):
            if len(item) != 1:
                raise _invalid("Invalid Simple-Condition: Simple-Conditions must have exactly "
                               "one property specified.")
            for name, value in item.items():
                if not isinstance(value, str):
                    raise _invalid("Invalid Simple-Condition: value must be a string.")
                text = json.dumps(["eq", f"${name}", value])
                conditions.append(Condition("eq", name.lower(), value, text))
        elif isinstance(item, list) and item:
            op = str(item[0]).lower()
            if op == "content-length-range":
                length = _length_range(item)
            elif op in ("eq", "starts-with"):
                if len(item) != 3 or not isinstance(item[1], str) or not isinstance(item[2], str):
                    raise _invalid(f"Invalid Condition: {json.dumps(item)}")
                if not item[1].startswith("$"):
                    raise _invalid(f"Invalid Condition: {json.dumps(item)}")
                conditions.append(Condition(op, item[1][1:].lower(), item[2], json.dumps(item)))
            else:
                raise _invalid(f"Invalid Condition: unknown operation {item[0]!r}")
        else:
            raise _invalid("Invalid Condition.")
    return Policy(expiration, tuple(conditions), length)


def _parse_time(value: object) -> float:
    """ISO 8601 with the "T" separator and a zone (AWS writes ...T12:00:00.000Z);
    Python's looser forms (a space, no zone) are refused, as AWS refuses them."""
    if not isinstance(value, str) or not _ISO8601.fullmatch(value):
        raise _invalid(f"Invalid 'expiration' value: '{value}'")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise _invalid(f"Invalid 'expiration' value: '{value}'") from None


def _length_range(item: list) -> LengthRange:
    try:
        low, high = int(item[1]), int(item[2])
    except (IndexError, TypeError, ValueError):
        raise _invalid("Invalid content-length-range.") from None
    if len(item) != 3 or low < 0 or high < low:
        raise _invalid("Invalid content-length-range.")
    return LengthRange(low, high)


def evaluate(policy: Policy, fields: Mapping[str, str], bucket: str, now: float) -> None:
    """Check the form (lowercase names, file excluded) against the policy."""
    if now > policy.expiration:
        raise s3e.AccessDenied(_DENIED + "Policy expired.")
    values = {**fields, "bucket": bucket}
    for cond in policy.conditions:
        if not _holds(cond, values.get(cond.field)):
            raise s3e.AccessDenied(_DENIED + "Policy Condition failed: " + cond.text)
    covered = {cond.field for cond in policy.conditions}
    extra = [
        name
        for name in fields
        if name not in covered and name not in EXEMPT_FIELDS and not name.startswith("x-ignore-")
    ]
    if extra:
        raise s3e.AccessDenied(
            _DENIED + "Extra input fields: " + ", ".join(sorted(extra))
        )


def _holds(cond: Condition, value: str | None) -> bool:
    if cond.op == "eq":
        return value == cond.value
    if value is None:
        return cond.value == ""  # ["starts-with", "$x", ""] allows the field to be absent
    if cond.field == "content-type":
        return all(part.strip().startswith(cond.value) for part in value.split(","))
    return value.startswith(cond.value)
