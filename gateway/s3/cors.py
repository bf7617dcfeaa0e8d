"""Bucket CORS: the configuration (PutBucketCors XML in, GetBucketCors XML out,
kept JSON-able in the bucket's settings under "cors") and the CORS answers, the
preflight OPTIONS and the Access-Control-* headers of actual requests.

Rules (AWS's):
- A configuration holds 1..100 rules; each names at least one AllowedMethod (GET,
  PUT, POST, DELETE, HEAD) and one AllowedOrigin. An origin or an allowed header
  holds at most one "*", which matches any run of characters.
- Rules are tried in order; the first one whose origin, method and (for a
  preflight) every requested header match answers. Origins compare exactly,
  header names without regard to case.
- Preflight (OPTIONS) needs no credentials: without Origin or
  Access-Control-Request-Method it is 400; with no configuration or no matching
  rule it is 403 AccessForbidden; else 200 with the rule's headers.
- An actual request carrying Origin gets the matching rule's headers, errors
  included: the frontend computes them before it authenticates. Its method is
  Access-Control-Request-Method when sent, else the request's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3.xml import child_text, document, el, parse
from kurastore.metadata import BucketNotFound

if TYPE_CHECKING:
    from kurastore.gateway.objects.service import ObjectService

SETTINGS_KEY = "cors"
MAX_RULES = 100
METHODS = ("GET", "PUT", "POST", "DELETE", "HEAD")
# S3's own words, its "evalution" included: clients and suites match the text.
FORBIDDEN = (
    "CORSResponse: This CORS request is not allowed. This is usually because the "
    "evalution of Origin, request method / Access-Control-Request-Method or "
    "Access-Control-Request-Headers are not whitelisted by the resource's CORS spec."
)
VARY = "Origin, Access-Control-Request-Headers, Access-Control-Request-Method"

Rule = Mapping[str, Any]


# --- configuration -------------------------------------------------------------------


def parse_config(body: bytes) -> list[dict[str, Any]]:
    """The rules of a PutBucketCors body, validated; raises the S3 error AWS answers."""
    doc = parse(body, "CORSConfiguration")
    rules = []
    for node in doc.findall("CORSRule"):
        methods = [(m.text or "").strip() for m in node.findall("AllowedMethod")]
        origins = [(o.text or "").strip() for o in node.findall("AllowedOrigin")]
        if not methods or not origins:
            raise s3e.MalformedXML()
        for method in methods:
            if method not in METHODS:
                raise s3e.InvalidRequest(
                    "Found unsupported HTTP method in CORS config. Unsupported method is "
                    + method
                )
        headers = [(h.text or "").strip() for h in node.findall("AllowedHeader")]
        for value in origins + headers:
            if value.count("*") > 1:
                raise s3e.InvalidRequest(f'"{value}" can not have more than one wildcard.')
        max_age = child_text(node, "MaxAgeSeconds")
        try:
            age = int(max_age) if max_age is not None else None
        except ValueError as exc:
            raise s3e.MalformedXML() from exc
        rule_id = child_text(node, "ID")
        if rule_id is not None and len(rule_id) > 255:
            raise s3e.InvalidArgument("The ID of a CORS rule must be at most 255 characters.")
        rules.append({
            "id": rule_id, "methods": methods, "origins": origins, "headers": headers,
            "expose": [(e.text or "").strip() for e in node.findall("ExposeHeader")],
            "max_age": age,
        })  # fmt: skip
    if not rules or len(rules) > MAX_RULES:
        raise s3e.MalformedXML()
    return rules


def render_config(rules: Sequence[Rule]) -> bytes:
    out = []
    for rule in rules:
        out.append(el("CORSRule", [
            el("ID", rule.get("id")),
            *(el("AllowedHeader", h) for h in rule.get("headers", ())),
            *(el("AllowedMethod", m) for m in rule["methods"]),
            *(el("AllowedOrigin", o) for o in rule["origins"]),
            *(el("ExposeHeader", e) for e in rule.get("expose", ())),
            el("MaxAgeSeconds", rule.get("max_age")),
        ]))  # fmt: skip
    return document("CORSConfiguration", out)


def rules_of(settings: Mapping[str, Any]) -> list[Rule]:
    rules = settings.get(SETTINGS_KEY)
    return list(rules) if isinstance(rules, list) else []


# --- matching --------------------------------------------------------------------------


def wildcard_match(pattern: str, value: str) -> bool:
    """`pattern` with at most one "*" standing for any run of characters."""
    if "*" not in pattern:
        return pattern == value
    head, _, tail = pattern.partition("*")
    return len(value) >= len(head) + len(tail) and value.startswith(head) and (
        value.endswith(tail)
    )


def _matching_origin(rule: Rule, origin: str) -> str | None:
    for pattern in rule["origins"]:
        if wildcard_match(pattern, origin):
            return pattern
    return None


def _headers_allowed(rule: Rule, requested: Sequence[str]) -> bool:
    patterns = [h.lower() for h in rule.get("headers", ())]
    return all(any(wildcard_match(p, name) for p in patterns) for name in requested)


def find_rule(
    rules: Sequence[Rule], origin: str, method: str, requested: Sequence[str] = ()
) -> tuple[Rule, str] | None:
    """The first rule allowing this origin, method and headers, with the origin
    pattern that matched."""
    for rule in rules:
        pattern = _matching_origin(rule, origin)
        if pattern is None or method not in rule["methods"]:
            continue
        if _headers_allowed(rule, requested):
            return rule, pattern
    return None


def answer_headers(rule: Rule, pattern: str, origin: str) -> dict[str, str]:
    """The Access-Control-* headers of a matched request."""
    out = {
        "Access-Control-Allow-Origin": "*" if pattern == "*" else origin,
        "Access-Control-Allow-Methods": ", ".join(rule["methods"]),
        "Vary": VARY,
    }
    if pattern != "*":
        out["Access-Control-Allow-Credentials"] = "true"
    if rule.get("expose"):
        out["Access-Control-Expose-Headers"] = ", ".join(rule["expose"])
    if rule.get("max_age") is not None:
        out["Access-Control-Max-Age"] = str(rule["max_age"])
    return out


def _requested_headers(value: str) -> list[str]:
    return [h.strip().lower() for h in value.split(",") if h.strip()]


# --- answers -----------------------------------------------------------------------------


async def _rules(service: ObjectService, bucket: str) -> list[Rule]:
    return rules_of((await service.get_bucket(bucket)).settings)


async def preflight(request: web.Request, service: ObjectService, bucket: str) -> web.Response:
    """The answer to an OPTIONS request (no credentials needed)."""
    origin = request.headers.get("Origin")
    if not origin:
        raise s3e.BadRequest("Insufficient information. Origin request header needed.")
    method = request.headers.get("Access-Control-Request-Method")
    if not method:
        raise s3e.BadRequest("Invalid Access-Control-Request-Method: null")
    if not bucket:
        raise s3e.AccessForbidden("CORSResponse: Bucket not found")
    rules = await _rules(service, bucket)
    if not rules:
        raise s3e.AccessForbidden("CORSResponse: CORS is not enabled for this bucket.")
    requested_raw = request.headers.get("Access-Control-Request-Headers", "")
    found = find_rule(rules, origin, method, _requested_headers(requested_raw))
    if found is None:
        raise s3e.AccessForbidden(FORBIDDEN)
    headers = answer_headers(*found, origin)
    if requested_raw.strip():  # echoed in lower case, as S3 does
        headers["Access-Control-Allow-Headers"] = requested_raw.strip().lower()
    return web.Response(status=200, headers=headers)


async def actual_headers(
    request: web.Request, service: ObjectService, bucket: str
) -> dict[str, str]:
    """The CORS headers an actual request with an Origin gets ({} without a match)."""
    origin = request.headers.get("Origin")
    if not origin or not bucket:
        return {}
    rules: list[Rule] = []
    with contextlib.suppress(BucketNotFound):
        rules = await _rules(service, bucket)
    if not rules:
        return {}
    method = request.headers.get("Access-Control-Request-Method") or request.method
    found = find_rule(rules, origin, method)
    return answer_headers(*found, origin) if found else {}
