"""SLO manifests as data: what a client PUTs, what is stored, and the bulk-style
answers Swift gives about them. Pure functions, no I/O (large_objects.py does
the reading and writing).

- A PUT body is a JSON list of segments, each either {"path", "etag"?,
  "size_bytes"?, "range"?} or {"data": base64}; `parse_put_body` checks it as
  Swift does and answers 400 with one "Index N: ..." line per problem.
- The stored form (what ?multipart-manifest=get shows) names segments
  {"name", "hash", "bytes", "content_type", "last_modified", "range"?,
  "sub_slo"?} or {"data"}; `hash` of a nested SLO is that SLO's own etag.
- A large object's etag is the MD5 of its segments' parts: the etag, or
  "etag:first-last;" for a ranged segment, or the MD5 of inline data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import escape

from kurastore.gateway.swift import errors as swe

MAX_MANIFEST_SEGMENTS = 1000
MAX_MANIFEST_SIZE = 8 << 20
MAX_SLO_DEPTH = 10  # nesting of sub-manifests a GET follows, as Swift's proxy
PATH_KEYS = frozenset({"path", "etag", "size_bytes", "range"})
ANSWER_FORMATS = ("text/plain", "application/json", "application/xml", "text/xml")
_HTML_ERROR = re.compile(r"<h1>(.*)</h1><p>(.*)</p>", re.S)

Span = tuple[int, int]  # first, last byte (inclusive)
Problem = tuple[str, str]  # segment path (quoted), what is wrong


@dataclass(frozen=True)
class Segment:
    """One entry of a large object: bytes of an object (all of it, or its span
    `start`..`start + size - 1`), or inline data."""

    bucket: str = ""
    key: str = ""
    etag: str = ""  # as recorded; reads are pinned to it (a sub-manifest's SLO etag)
    size: int = 0  # bytes this entry contributes
    start: int = 0
    sub_slo: bool = False
    data: bytes | None = None


def split_name(name: str) -> tuple[str, str]:
    """(container, object) of "/container/object"; 400 when it names no object."""
    bucket, sep, key = str(name).lstrip("/").partition("/")
    if not sep or not bucket or not key:
        raise swe.BadRequest("invalid path")
    return bucket, key


# --- ranges ----------------------------------------------------------------------------------


def parse_range(text: str) -> list[tuple[int | None, int | None]]:
    """The (start, end) specs of "M-N", "M-", "-N" (several with commas), as
    Swift reads a Range header; ValueError when one is malformed."""
    specs: list[tuple[int | None, int | None]] = []
    for spec in text.replace(" ", "").split(","):
        first, sep, last = spec.partition("-")
        if not sep or (last and not last.isdigit()) or not (first or last):
            raise ValueError(text)
        start = int(first) if first else None
        end = int(last) if last else None
        if start is not None and end is not None and end < start:
            raise ValueError(text)
        specs.append((start, end))
    return specs


def span_in(spec: tuple[int | None, int | None], length: int) -> Span | None:
    """The bytes a range spec selects in `length` bytes; None when unsatisfiable."""
    start, end = spec
    if start is None:
        if not end:
            return None
        return max(0, length - end), length - 1
    if start >= length:
        return None
    return start, length - 1 if end is None else min(end, length - 1)


# --- the PUT body ------------------------------------------------------------------------------


def parse_put_body(raw: bytes, container: str, obj: str) -> list[dict[str, Any]]:
    """The checked entries of a manifest PUT ("size_bytes" made an int, "range"
    left as the client's text, "data" re-encoded); 400 listing every problem."""
    try:
        items = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser goes
        raise swe.BadRequest("Manifest must be valid JSON.\n") from None
    if not isinstance(items, list):
        raise swe.BadRequest("Manifest must be a list.\n")
    if not items:  # Swift would store an empty object; refuse it as a client mistake
        raise swe.BadRequest("Manifest must be a list of segments.\n")
    errors = [e for i, item in enumerate(items)
              if (e := _entry_problem(i, item, i == len(items) - 1, (container, obj)))]
    if all(isinstance(item, dict) and "data" in item for item in items):
        errors.append("Inline data segments require at least one object-backed segment.")
    if errors:
        raise swe.BadRequest("".join(e + "\n" for e in errors))
    if sum(1 for item in items if "path" in item) > MAX_MANIFEST_SEGMENTS:
        raise swe.RequestEntityTooLarge(
            f"Number of object-backed segments must be <= {MAX_MANIFEST_SEGMENTS}")
    return items


def _entry_problem(i: int, item: Any, last: bool, target: tuple[str, str]) -> str | None:
    """Swift's message for a malformed entry (normalizing a good one in place)."""
    if not isinstance(item, dict):
        return f"Index {i}: not a JSON object"
    if "data" in item:
        extra = sorted(k for k in item if k != "data")
        return _extra(i, extra) if extra else _data_problem(i, item)
    if "path" not in item:
        return f"Index {i}: expected keys to include one of 'data' or 'path'"
    extra = sorted(k for k in item if k not in PATH_KEYS)
    if extra:
        return _extra(i, extra)
    return _path_problem(i, item, last, target)


def _extra(i: int, keys: list[str]) -> str:
    return f"Index {i}: extraneous keys " + ", ".join(json.dumps(k) for k in keys)


def _data_problem(i: int, item: dict[str, Any]) -> str | None:
    try:
        data = base64.b64decode(item["data"], validate=True)
    except (binascii.Error, TypeError, ValueError):
        return f"Index {i}: data must be valid base64"
    if not data:
        return f"Index {i}: too small; each segment must be at least 1 byte."
    item["data"] = base64.b64encode(data).decode()  # normalized padding, as Swift stores it
    return None


def _path_problem(i: int, item: dict[str, Any], last: bool,
                  target: tuple[str, str]) -> str | None:
    path, etag, size = item["path"], item.get("etag"), item.get("size_bytes")
    if not isinstance(path, str):
        return f'Index {i}: "path" must be a string'
    if etag is not None and not isinstance(etag, str):
        return f'Index {i}: "etag" must be a string or null (if provided)'
    if "/" not in path.strip("/"):
        return (f"Index {i}: path does not refer to an object. Path must be of the form "
                "/container/object.")
    if size is not None:
        try:
            size = item["size_bytes"] = int(size)
        except (TypeError, ValueError, OverflowError):  # OverflowError: Infinity
            return f"Index {i}: invalid size_bytes"
        if size < 1 and not last:
            return f"Index {i}: too small; each segment must be at least 1 byte."
    if tuple(path.lstrip("/").split("/", 1)) == target:
        return f"Index {i}: manifest must not include itself as a segment"
    return _range_problem(i, item, size)


def _range_problem(i: int, item: dict[str, Any], size: int | None) -> str | None:
    if not item.get("range"):
        item.pop("range", None)
        return None
    try:
        specs = parse_range(str(item["range"]))
    except ValueError:
        return f"Index {i}: invalid range"
    if len(specs) > 1:
        return f"Index {i}: multiple ranges (only one allowed)"
    if size is not None and span_in(specs[0], size) is None:
        return f"Index {i}: unsatisfiable range"
    return None


# --- the stored form -----------------------------------------------------------------------------


def segment_of(item: Mapping[str, Any]) -> Segment:
    """The Segment a stored manifest entry describes."""
    if "data" in item:
        data = base64.b64decode(item["data"])
        return Segment(size=len(data), data=data)
    bucket, key = split_name(item["name"])
    start, size = 0, int(item["bytes"])
    if item.get("range"):
        first, _, last = str(item["range"]).partition("-")
        start, size = int(first), int(last) - int(first) + 1
    return Segment(bucket, key, str(item["hash"]), size, start, bool(item.get("sub_slo")))


def etag_part(item: Mapping[str, Any]) -> str:
    """What a stored entry adds to the large object's etag."""
    if "data" in item:
        return hashlib.md5(base64.b64decode(item["data"])).hexdigest()
    if item.get("range"):
        return f"{item['hash']}:{item['range']};"
    return str(item["hash"])


def large_etag(parts: list[str]) -> str:
    return hashlib.md5("".join(parts).encode()).hexdigest()


def raw_form(items: list[dict[str, Any]]) -> bytes:
    """?multipart-manifest=get&format=raw: the stored entries under the names a
    PUT uses, so the answer can be PUT back as a manifest."""
    out = []
    for item in items:
        if "data" in item:
            out.append(dict(item))
            continue
        entry = {"path": item.get("name"), "size_bytes": item.get("bytes"),
                 "etag": item.get("hash")}
        if item.get("range"):
            entry["range"] = item["range"]
        out.append(entry)
    return json.dumps(out, sort_keys=True).encode()


# --- bulk-style answers ---------------------------------------------------------------------------


def answer_format(accept: str | None) -> str:
    """The best of Swift's bulk answer formats for an Accept header (text/plain
    when none fits)."""
    ranked: list[tuple[float, int, str]] = []
    for n, part in enumerate((accept or "").split(",")):
        media, *params = [p.strip() for p in part.split(";")]
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if media and q > 0:
            ranked.append((-q, n, media.lower()))
    for _, _, media in sorted(ranked):
        for offer in ANSWER_FORMATS:
            kind = offer.split("/")[0]
            if media in (offer, f"{kind}/*", "*/*"):
                return offer
    return "text/plain"


def answer_body(fmt: str, summary: Mapping[str, Any], errors: list[Problem], root: str) -> bytes:
    """Swift's bulk answer body (upload or delete summary) in `fmt`."""
    if fmt == "application/json":
        return json.dumps({**summary, "Errors": [list(e) for e in errors]}).encode()
    if fmt.endswith("/xml"):
        out = [f"<{root}>\n"]
        for key in sorted(summary):
            tag = key.replace(" ", "_").lower()
            out.append(f"<{tag}>{escape(str(summary[key]))}</{tag}>\n")
        out.append("<errors>\n")
        out += [f"<object><name>{escape(n)}</name><status>{escape(s)}</status></object>\n"
                for n, s in errors]
        out.append(f"</errors>\n</{root}>\n")
        return "".join(out).encode()
    lines = [f"{key}: {summary[key]}\n" for key in sorted(summary)]
    lines.append("Errors:\n")
    lines += [f"{name}, {status}\n" for name, status in errors]
    return "".join(lines).encode()


def error_summary(err: swe.SwiftError) -> dict[str, str]:
    """"Response Status" and "Response Body" of a failed step, as Swift words
    them: its specific message, else the title and explanation of its error page."""
    match = _HTML_ERROR.search(err.body)
    title, explanation = match.groups() if match else (str(err.status), "")
    body = err.text if err.is_plain else f"{title}\n{explanation}".strip()
    return {"Response Status": f"{err.status} {title}", "Response Body": body}
