"""Bucket policies: validating the JSON document and evaluating it for a request.

`parse` checks a policy as PutBucketPolicy receives it and returns the document
(stored as given in the bucket's settings). `evaluate` answers "Deny", "Allow"
or None (the policy says nothing) for one caller, action, resource and request
context; `is_public` says whether the policy grants anything to everyone.

Rules (AWS's, for the parts we implement):
- Principal "*" or {"AWS": "*"} matches every caller, anonymous ones too; other
  principals match a user by canonical id, bare or as arn:aws:iam::<id>:root or
  :user/<id>. NotPrincipal is accepted with Deny only. A service acting for the
  store (server access log delivery: logging.s3.amazonaws.com) is matched by
  {"Service": name} and by "*", never by an "AWS" principal.
- Action, NotAction, Resource and NotResource match with * and ? wildcards;
  actions ignore case, resources do not. Resources must name this bucket.
- Every condition of a statement must hold. Operators: String(Not)Equals(IgnoreCase),
  String(Not)Like, Numeric*, Date*, Bool, (Not)IpAddress, Null, ArnEquals/Like, with
  the IfExists suffix and ForAnyValue:/ForAllValues: prefixes. A key absent from the
  context fails a positive operator and satisfies a negated one.
- An explicit Deny wins over any Allow; the caller of `evaluate` applies that.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from collections.abc import Mapping, Sequence
from typing import Any

from kurastore.gateway.s3 import errors as s3e

MAX_POLICY_BYTES = 20 * 1024
_EFFECTS = ("Allow", "Deny")
_STATEMENT_KEYS = frozenset({"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction",
                             "Resource", "NotResource", "Condition"})
# Conditions that tie an Allow to something other than "anyone at all".
_RESTRICTING_KEYS = frozenset({"aws:sourceip", "aws:sourcevpc", "aws:sourcevpce",
                               "aws:sourcearn", "aws:sourceaccount", "aws:sourceowner",
                               "aws:principalaccount", "aws:principalorgid", "aws:userid",
                               "aws:principalarn", "s3:dataaccesspointaccount"})

MalformedPolicy = type(
    "MalformedPolicy", (s3e.S3Error,),
    {"code": "MalformedPolicy", "status": 400, "message": "Policies must be valid JSON"},
)  # fmt: skip


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def parse(text: bytes | str, bucket: str) -> dict[str, Any]:
    """The policy document, validated; raises MalformedPolicy."""
    if len(text) > MAX_POLICY_BYTES:
        raise MalformedPolicy("Policy exceeds the maximum allowed document size.")
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        raise MalformedPolicy() from None
    if not isinstance(doc, dict) or "Statement" not in doc:
        raise MalformedPolicy("Missing required field Statement")
    if doc.get("Version", "2012-10-17") not in ("2012-10-17", "2008-10-17"):
        raise MalformedPolicy("Invalid policy version")
    statements = _as_list(doc["Statement"])
    if not statements:
        raise MalformedPolicy("Could not parse the policy: Statement is empty!")
    for st in statements:
        _check_statement(st, bucket)
    return doc


def _check_statement(st: Any, bucket: str) -> None:
    if not isinstance(st, dict) or not set(st) <= _STATEMENT_KEYS:
        raise MalformedPolicy("Unknown field in a policy statement")
    if st.get("Effect") not in _EFFECTS:
        raise MalformedPolicy("Invalid effect")
    if ("Principal" in st) == ("NotPrincipal" in st):
        raise MalformedPolicy("Statement must have exactly one of Principal or NotPrincipal")
    if "NotPrincipal" in st and st["Effect"] != "Deny":
        raise MalformedPolicy("NotPrincipal is only supported with Deny")
    if ("Action" in st) == ("NotAction" in st):
        raise MalformedPolicy("Missing required field Action")
    if ("Resource" in st) == ("NotResource" in st):
        raise MalformedPolicy("Missing required field Resource")
    for action in _as_list(st.get("Action", st.get("NotAction"))):
        if not isinstance(action, str) or not (action == "*" or action.lower().startswith("s3:")):
            raise MalformedPolicy("Policy has invalid action")
    for resource in _as_list(st.get("Resource", st.get("NotResource"))):
        if not isinstance(resource, str) or not _names_bucket(resource, bucket):
            raise MalformedPolicy("Policy has invalid resource")
    principal = st.get("Principal", st.get("NotPrincipal"))
    if not (principal == "*" or (isinstance(principal, dict) and principal)):
        raise MalformedPolicy("Invalid principal in policy")
    condition = st.get("Condition", {})
    if not isinstance(condition, dict) or not all(
        isinstance(block, dict) and _operator(op) is not None for op, block in condition.items()
    ):
        raise MalformedPolicy("Invalid Condition in policy")


def _names_bucket(resource: str, bucket: str) -> bool:
    if resource == "*":
        return True
    if not resource.startswith("arn:aws:s3:::"):
        return False
    name = resource[len("arn:aws:s3:::"):].split("/", 1)[0]
    return _glob(name, bucket, False)


# --- evaluation ---------------------------------------------------------------------------


def evaluate(
    doc: Mapping[str, Any], *, caller: str | None, action: str, resource: str,
    context: Mapping[str, Sequence[str]], service: str | None = None,
) -> str | None:
    """"Deny", "Allow" or None for this request. `context` keys are lowercase.
    `service`: the service principal acting (then `caller` is None)."""
    result = None
    for st in _as_list(doc.get("Statement", [])):
        if not _applies(st, caller, action, resource, context, service):
            continue
        if st["Effect"] == "Deny":
            return "Deny"
        result = "Allow"
    return result


def _applies(st: Mapping[str, Any], caller: str | None, action: str, resource: str,
             context: Mapping[str, Sequence[str]], service: str | None = None) -> bool:
    if "Principal" in st:
        if not _principal_matches(st["Principal"], caller, service):
            return False
    elif _principal_matches(st["NotPrincipal"], caller, service):
        return False
    if "Action" in st:
        if not any(_glob(a, action, True) for a in _as_list(st["Action"])):
            return False
    elif any(_glob(a, action, True) for a in _as_list(st["NotAction"])):
        return False
    if "Resource" in st:
        if not any(_glob(r, resource, False) for r in _as_list(st["Resource"])):
            return False
    elif any(_glob(r, resource, False) for r in _as_list(st["NotResource"])):
        return False
    return all(
        _condition(op, key, values, context)
        for op, block in st.get("Condition", {}).items()
        for key, values in block.items()
    )


def _principal_matches(principal: Any, caller: str | None, service: str | None = None
                       ) -> bool:
    if principal == "*":
        return True
    if service is not None:
        named = principal.get("Service", []) if isinstance(principal, dict) else []
        return service in _as_list(named)
    for value in _as_list(principal.get("AWS", [])) if isinstance(principal, dict) else []:
        if value == "*":
            return True
        if caller is not None and _principal_id(str(value)) == caller:
            return True
    return False


def _principal_id(value: str) -> str:
    """arn:aws:iam::<id>:root and arn:aws:iam::<account>:user/<id> name <id>."""
    if value.startswith("arn:aws:iam::"):
        account, _, rest = value[len("arn:aws:iam::"):].partition(":")
        return rest[len("user/"):] if rest.startswith("user/") else account
    return value


def _glob(pattern: str, value: str, ignore_case: bool) -> bool:
    """Wildcard match (* any run, ? one character) in O(len(pattern) * len(value)),
    whatever the pattern: a policy cannot make a request slow."""
    if ignore_case:
        pattern, value = pattern.lower(), value.lower()
    p = v = 0
    star, mark = -1, 0
    while v < len(value):
        if p < len(pattern) and pattern[p] in ("?", value[v]):
            p, v = p + 1, v + 1
        elif p < len(pattern) and pattern[p] == "*":
            star, mark, p = p, v, p + 1
        elif star >= 0:
            mark += 1
            p, v = star + 1, mark
        else:
            return False
    return all(c == "*" for c in pattern[p:])


def _operator(name: str) -> tuple[str, str, bool] | None:
    """(set qualifier, base operator, if-exists) of a condition operator, None if unknown."""
    qualifier, _, base = name.rpartition(":")
    if qualifier not in ("", "ForAnyValue", "ForAllValues"):
        return None
    if_exists = base.endswith("IfExists")
    base = base[: -len("IfExists")] if if_exists else base
    return (qualifier, base, if_exists) if base in _OPERATORS else None


def _condition(op: str, key: str, wanted: Any, context: Mapping[str, Sequence[str]]) -> bool:
    parsed = _operator(op)
    if parsed is None:
        return False
    qualifier, base, if_exists = parsed
    wanted_values = [str(w).lower() if isinstance(w, bool) else str(w) for w in _as_list(wanted)]
    present = context.get(key.lower())
    if base == "Null":
        return (present is None) == (wanted_values[0].lower() == "true")
    negated = "Not" in base
    if present is None:
        return if_exists or negated or qualifier == "ForAllValues"
    test = _OPERATORS[base]
    if qualifier == "ForAllValues":
        return all(test(v, wanted_values) for v in present)
    return any(test(v, wanted_values) for v in present) if not negated else all(
        test(v, wanted_values) for v in present
    )


def _ip_in(value: str, nets: list[str]) -> bool:
    try:
        address = ipaddress.ip_address(value)
        return any(address in ipaddress.ip_network(n, strict=False) for n in nets)
    except ValueError:
        return False


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _date(text: str) -> float | None:
    if (num := _number(text)) is not None:
        return num
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _compare(convert, cmp):
    def test(value: str, wanted: list[str]) -> bool:
        left = convert(value)
        return left is not None and any(
            (right := convert(w)) is not None and cmp(left, right) for w in wanted
        )
    return test


_EQ = _compare(str, lambda a, b: a == b)
_EQ_CI = _compare(str.lower, lambda a, b: a == b)
_LIKE = _compare(str, lambda a, b: _glob(b, a, False))
_OPERATORS = {
    "StringEquals": _EQ, "StringNotEquals": lambda v, w: not _EQ(v, w),
    "StringEqualsIgnoreCase": _EQ_CI, "StringNotEqualsIgnoreCase": lambda v, w: not _EQ_CI(v, w),
    "StringLike": _LIKE, "StringNotLike": lambda v, w: not _LIKE(v, w),
    "ArnEquals": _LIKE, "ArnLike": _LIKE,
    "ArnNotEquals": lambda v, w: not _LIKE(v, w), "ArnNotLike": lambda v, w: not _LIKE(v, w),
    "NumericEquals": _compare(_number, lambda a, b: a == b),
    "NumericNotEquals": _compare(_number, lambda a, b: a != b),
    "NumericLessThan": _compare(_number, lambda a, b: a < b),
    "NumericLessThanEquals": _compare(_number, lambda a, b: a <= b),
    "NumericGreaterThan": _compare(_number, lambda a, b: a > b),
    "NumericGreaterThanEquals": _compare(_number, lambda a, b: a >= b),
    "DateEquals": _compare(_date, lambda a, b: a == b),
    "DateNotEquals": _compare(_date, lambda a, b: a != b),
    "DateLessThan": _compare(_date, lambda a, b: a < b),
    "DateLessThanEquals": _compare(_date, lambda a, b: a <= b),
    "DateGreaterThan": _compare(_date, lambda a, b: a > b),
    "DateGreaterThanEquals": _compare(_date, lambda a, b: a >= b),
    "Bool": _EQ_CI,
    "IpAddress": _ip_in, "NotIpAddress": lambda v, w: not _ip_in(v, w),
    "Null": _EQ_CI,
}  # fmt: skip


def is_public(doc: Mapping[str, Any]) -> bool:
    """Does an Allow statement reach everyone, unrestricted by a source or account?"""
    for st in _as_list(doc.get("Statement", [])):
        if st.get("Effect") != "Allow" or not _principal_matches(st.get("Principal", {}), None):
            continue
        keys = {k.lower() for block in st.get("Condition", {}).values() for k in block}
        if not keys & _RESTRICTING_KEYS:
            return True
    return False
