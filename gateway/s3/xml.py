"""S3 XML: building answers and parsing request bodies.

Answers are built as strings from small fragments (`el`, `document`): listing
1000 keys is a join, not a tree. Every text goes through `escape`, which also
writes CR and other control characters as character references so keys survive
a round trip through any XML parser. Request bodies are parsed only with
defusedxml (no entity expansion, no external entities); namespaces are dropped,
and anything not well-formed or not shaped as S3 documents it is MalformedXML.

Rendering of whole answers lives with the handlers that own them; this module
knows no operation.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from kurastore.gateway.s3.errors import MalformedXML

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
CONTENT_TYPE = "application/xml"

Value = str | int | bool | None

_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;"}
_NEEDS_ESCAPE = re.compile("[&<>\"\r\x00-\x08\x0b\x0c\x0e-\x1f]")


def _escape_char(match: re.Match[str]) -> str:
    ch = match.group(0)
    return _ESCAPES.get(ch) or f"&#x{ord(ch):x};"


def escape(text: str) -> str:
    """XML-escapes text for an element or a double-quoted attribute."""
    return _NEEDS_ESCAPE.sub(_escape_char, text)


def el(tag: str, value: Value | Iterable[str]) -> str:
    """One element: text for str/int/bool values ("true"/"false"), concatenated
    child fragments for an iterable of strings, nothing at all for None."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return f"<{tag}>{'true' if value else 'false'}</{tag}>"
    if isinstance(value, int):
        return f"<{tag}>{value}</{tag}>"
    if isinstance(value, str):
        return f"<{tag}>{escape(value)}</{tag}>"
    return f"<{tag}>{''.join(value)}</{tag}>"


def document(root: str, children: Iterable[str], *, attrs: str = "") -> bytes:
    """A whole answer: XML declaration and `root` in S3's namespace."""
    body = "".join(children)
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{NS}"{attrs}>{body}</{root}>'
    ).encode()


def iso8601(ts: float) -> str:
    """Listing timestamps: 2009-10-12T17:50:30.000Z (milliseconds, UTC)."""
    ms = round(ts * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


def quoted(etag: str) -> str:
    return f'"{etag}"'


def owner(user_id: str, display_name: str, tag: str = "Owner") -> str:
    return el(tag, [el("ID", user_id), el("DisplayName", display_name)])


# --- parsing ----------------------------------------------------------------------


def parse(body: bytes, root: str) -> Element:
    """Parses a request body whose root element must be `root` (any namespace)."""
    if not body.strip():
        raise MalformedXML()
    try:
        tree = SafeET.fromstring(body)
    # LookupError: an encoding Python does not know (<?xml encoding="ebcdic"?>).
    except (SafeET.ParseError, DefusedXmlException, ValueError, LookupError) as exc:
        raise MalformedXML() from exc
    for node in tree.iter():
        if isinstance(node.tag, str) and "}" in node.tag:
            node.tag = node.tag.split("}", 1)[1]
    if tree.tag != root:
        raise MalformedXML()
    return tree


def child_text(node: Element, tag: str, default: str | None = None) -> str | None:
    """Text of the first child `tag` ("" when empty), or `default` when absent."""
    child = node.find(tag)
    if child is None:
        return default
    return child.text or ""


def parse_bool(text: str | None) -> bool:
    if text is None:
        return False
    value = text.strip().lower()
    if value not in ("true", "false"):
        raise MalformedXML()
    return value == "true"
