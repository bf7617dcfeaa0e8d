"""Bucket lifecycle configuration on the wire: PutBucketLifecycleConfiguration's
XML parsed and validated into the rule form of objects/lifecycle.py, the same
rules rendered back for GetBucketLifecycleConfiguration exactly as they were
given (legacy Prefix or Filter, the filter's own shape; several conditions
without <And>, which RGW accepts, are kept as given), and the
x-amz-expiration header of GET, HEAD and PUT.

Validation is AWS's: 1..1000 rules; an ID of at most 255 characters, unique
(a missing one is generated); Status exactly "Enabled" or "Disabled"
(MalformedXML otherwise); at least one action; Days and NoncurrentDays
positive and Date at midnight UTC (InvalidArgument); Prefix and Filter not
both; tag and size filters not with ExpiredObjectDeleteMarker or
AbortIncompleteMultipartUpload (InvalidRequest). Transitions are validated
and refused with NotImplemented: there is no colder tier to move data to.
"""

from __future__ import annotations

import datetime
import secrets
from collections.abc import Mapping, Sequence
from typing import Any
from xml.etree.ElementTree import Element

from kurastore.gateway.objects.lifecycle import current_expiry
from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3.headers import http_date
from kurastore.gateway.s3.xml import child_text, document, el, iso8601, parse
from kurastore.metadata import ObjectVersion

MAX_RULES = 1000
_FLAT = frozenset({"Prefix", "Tag", "ObjectSizeGreaterThan", "ObjectSizeLessThan"})
MAX_ID = 255

Rule = Mapping[str, Any]


# --- parsing -----------------------------------------------------------------------------


def _int(text: str | None, what: str) -> int:
    try:
        value = int((text or "").strip())
    except ValueError as exc:
        raise s3e.MalformedXML() from exc
    if value <= 0:
        raise s3e.InvalidArgument(f"'{what}' for Expiration action must be a positive integer")
    return value


def _date(text: str | None) -> float:
    raw = (text or "").strip()
    try:
        when = datetime.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise s3e.InvalidArgument("'Date' must be in ISO 8601 format") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    if when.timetz().replace(tzinfo=None) != datetime.time(0) or when.utcoffset():
        raise s3e.InvalidArgument("'Date' must be at midnight GMT")
    return when.timestamp()


def _tags(nodes: Sequence[Element]) -> list[list[str]]:
    tags = []
    for node in nodes:
        key, value = child_text(node, "Key"), child_text(node, "Value")
        if key is None or value is None:
            raise s3e.MalformedXML()
        tags.append([key, value])
    if len({k for k, _ in tags}) != len(tags):
        raise s3e.InvalidRequest("Duplicate Tag Keys are not allowed.")
    return tags


def _size(node: Element, tag: str) -> int | None:
    text = child_text(node, tag)
    if text is None:
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise s3e.MalformedXML() from exc


def _filter(node: Element) -> dict[str, Any]:
    out: dict[str, Any] = {"form": "empty", "prefix": "", "tags": [], "gt": None, "lt": None}
    parts = [child.tag for child in node]
    if not parts:
        return out
    if len(parts) > 1:
        # Several conditions without <And>: AWS refuses them, RGW (and the tools
        # written for it) send them; they mean the same as <And>, so they are kept.
        flat = set(parts) <= _FLAT and all(parts.count(p) == 1 for p in parts if p != "Tag")
        if not flat:
            raise s3e.MalformedXML()
        out.update(form="flat", prefix=child_text(node, "Prefix") or "",
                   tags=_tags(node.findall("Tag")), gt=_size(node, "ObjectSizeGreaterThan"),
                   lt=_size(node, "ObjectSizeLessThan"))  # fmt: skip
        return out
    form = parts[0]
    if form == "Prefix":
        out.update(form="prefix", prefix=child_text(node, "Prefix") or "")
    elif form == "Tag":
        out.update(form="tag", tags=_tags(node.findall("Tag")))
    elif form == "ObjectSizeGreaterThan":
        out.update(form="gt", gt=_size(node, form))
    elif form == "ObjectSizeLessThan":
        out.update(form="lt", lt=_size(node, form))
    elif form == "And":
        both = node.find("And")
        assert both is not None
        out.update(form="and", prefix=child_text(both, "Prefix") or "",
                   tags=_tags(both.findall("Tag")), gt=_size(both, "ObjectSizeGreaterThan"),
                   lt=_size(both, "ObjectSizeLessThan"))  # fmt: skip
    else:
        raise s3e.MalformedXML()
    return out


def _expiration(node: Element) -> dict[str, Any]:
    given = [t for t in ("Days", "Date", "ExpiredObjectDeleteMarker") if node.find(t) is not None]
    if len(given) != 1:
        raise s3e.MalformedXML()
    if given[0] == "Days":
        return {"days": _int(child_text(node, "Days"), "Days")}
    if given[0] == "Date":
        return {"date": _date(child_text(node, "Date"))}
    flag = (child_text(node, "ExpiredObjectDeleteMarker") or "").strip().lower()
    if flag not in ("true", "false"):
        raise s3e.MalformedXML()
    return {"delete_marker": flag == "true"}


def _check_transitions(node: Element) -> None:
    """Transitions are checked like the rest, then refused: no colder tier exists."""
    found = node.findall("Transition") + node.findall("NoncurrentVersionTransition")
    for transition in found:
        if transition.find("Date") is not None:
            _date(child_text(transition, "Date"))
    if found:
        raise s3e.NotImplemented_("Lifecycle transitions are not supported: there is one tier.")


def _rule(node: Element) -> dict[str, Any]:
    rule_id = child_text(node, "ID")
    if rule_id is not None and len(rule_id) > MAX_ID:
        raise s3e.InvalidArgument("ID length should not exceed allowed limit of 255")
    status = child_text(node, "Status")
    if status not in ("Enabled", "Disabled"):
        raise s3e.MalformedXML()
    prefix = child_text(node, "Prefix")
    filter_node = node.find("Filter")
    if prefix is not None and filter_node is not None:
        raise s3e.MalformedXML()
    rule: dict[str, Any] = {
        "id": rule_id if rule_id else secrets.token_hex(16), "status": status,
        "prefix": prefix, "filter": _filter(filter_node) if filter_node is not None else None,
        "expiration": None, "noncurrent": None, "abort_days": None,
    }  # fmt: skip
    expiration = node.find("Expiration")
    if expiration is not None:
        rule["expiration"] = _expiration(expiration)
    noncurrent = node.find("NoncurrentVersionExpiration")
    if noncurrent is not None:
        newer = child_text(noncurrent, "NewerNoncurrentVersions")
        rule["noncurrent"] = {
            "days": _int(child_text(noncurrent, "NoncurrentDays"), "NoncurrentDays"),
            "newer": _int(newer, "NewerNoncurrentVersions") if newer is not None else None,
        }
    abort = node.find("AbortIncompleteMultipartUpload")
    if abort is not None:
        rule["abort_days"] = _int(child_text(abort, "DaysAfterInitiation"),
                                  "DaysAfterInitiation")
    _check_transitions(node)
    if not (rule["expiration"] or rule["noncurrent"] or rule["abort_days"]):
        raise s3e.InvalidRequest("At least one action needs to be specified in a rule")
    flt = rule["filter"] or {}
    by_tag_or_size = flt.get("tags") or flt.get("gt") is not None or flt.get("lt") is not None
    if by_tag_or_size and (rule["abort_days"] or (rule["expiration"] or {}).get("delete_marker")):
        raise s3e.InvalidRequest(
            "Tag or object size based filtering cannot be used with "
            "ExpiredObjectDeleteMarker or AbortIncompleteMultipartUpload"
        )
    return rule


def parse_config(body: bytes) -> list[dict[str, Any]]:
    doc = parse(body, "LifecycleConfiguration")
    rules = [_rule(node) for node in doc.findall("Rule")]
    if not rules or len(rules) > MAX_RULES:
        raise s3e.MalformedXML()
    ids = [r["id"] for r in rules]
    if len(set(ids)) != len(ids):
        raise s3e.InvalidArgument("Rule ID must be unique. Found same ID for more than one rule")
    return rules


# --- rendering ---------------------------------------------------------------------------


def _render_filter(flt: Mapping[str, Any]) -> str:
    tags = [el("Tag", [el("Key", k), el("Value", v)]) for k, v in flt.get("tags", ())]
    form = flt.get("form")
    if form == "prefix":
        inner = el("Prefix", flt.get("prefix", ""))
    elif form == "tag":
        inner = "".join(tags)
    elif form == "gt":
        inner = el("ObjectSizeGreaterThan", flt.get("gt"))
    elif form == "lt":
        inner = el("ObjectSizeLessThan", flt.get("lt"))
    elif form in ("and", "flat"):
        inner = "".join([
            el("Prefix", flt.get("prefix") or None), *tags,
            el("ObjectSizeGreaterThan", flt.get("gt")), el("ObjectSizeLessThan", flt.get("lt")),
        ])  # fmt: skip
        inner = el("And", [inner]) if form == "and" else inner
    else:
        inner = ""
    return el("Filter", [inner])


def _render_rule(rule: Rule) -> str:
    expiration = rule.get("expiration") or None
    exp = None
    if expiration is not None:
        exp = [
            el("Days", expiration.get("days")),
            el("Date", iso8601(expiration["date"]) if "date" in expiration else None),
            el("ExpiredObjectDeleteMarker", expiration.get("delete_marker")),
        ]
    noncurrent = rule.get("noncurrent")
    return el("Rule", [
        el("ID", rule.get("id")),
        el("Prefix", rule.get("prefix")),
        _render_filter(rule["filter"]) if rule.get("filter") is not None else "",
        el("Status", rule.get("status")),
        el("Expiration", exp) if exp is not None else "",
        el("NoncurrentVersionExpiration", [
            el("NoncurrentDays", noncurrent["days"]),
            el("NewerNoncurrentVersions", noncurrent.get("newer")),
        ]) if noncurrent else "",
        el("AbortIncompleteMultipartUpload", [el("DaysAfterInitiation", rule["abort_days"])])
        if rule.get("abort_days") else "",
    ])  # fmt: skip


def render_config(rules: Sequence[Rule]) -> bytes:
    return document("LifecycleConfiguration", [_render_rule(r) for r in rules])


# --- the x-amz-expiration header -----------------------------------------------------------


def expiration_header(rules: Sequence[Rule], version: ObjectVersion) -> dict[str, str]:
    """x-amz-expiration for the current version `version` ({} when no rule expires it)."""
    found = current_expiry(rules, version)
    if found is None:
        return {}
    when, rule_id = found
    return {"x-amz-expiration": f'expiry-date="{http_date(when)}", rule-id="{rule_id}"'}
