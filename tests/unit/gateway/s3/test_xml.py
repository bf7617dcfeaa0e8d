"""S3 XML: escaping survives a real parser; request parsing is strict and safe."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from kurastore.gateway.s3.errors import MalformedXML
from kurastore.gateway.s3.xml import (
    NS,
    child_text,
    document,
    el,
    escape,
    iso8601,
    owner,
    parse,
    parse_bool,
)


@pytest.mark.parametrize(
    "text",
    ["plain", "a&b<c>d\"e'f", "line1\r\nline2\rend", "tab\there", "\u2603 snow \U0001f600",
     "]]>", "&amp;"],
)
def test_escaped_text_round_trips_through_a_parser(text):
    root = ET.fromstring(document("R", [el("Key", text)]))
    assert root.find(f"{{{NS}}}Key").text == text


def test_control_characters_become_character_references():
    assert escape("a\x01b") == "a&#x1;b"
    assert "\x01" not in document("R", [el("Key", "a\x01b")]).decode()


def test_el_renders_values_and_children():
    assert el("N", 5) == "<N>5</N>"
    assert el("B", True) == "<B>true</B>" and el("B", False) == "<B>false</B>"
    assert el("X", None) == ""
    assert el("E", "") == "<E></E>"
    assert el("P", [el("A", "1"), el("B", "2")]) == "<P><A>1</A><B>2</B></P>"
    assert owner("id1", "me") == "<Owner><ID>id1</ID><DisplayName>me</DisplayName></Owner>"


def test_document_has_declaration_and_namespace():
    body = document("ListAllMyBucketsResult", [el("Buckets", [])])
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<ListAllMyBucketsResult ')
    assert ET.fromstring(body).tag == f"{{{NS}}}ListAllMyBucketsResult"


def test_iso8601_has_milliseconds_and_z():
    assert iso8601(0) == "1970-01-01T00:00:00.000Z"
    assert iso8601(1255369830.1234) == "2009-10-12T17:50:30.123Z"
    assert iso8601(1.9996) == "1970-01-01T00:00:02.000Z"


def test_parse_strips_namespaces_and_checks_root():
    body = (
        f'<Delete xmlns="{NS}"><Quiet>true</Quiet>'
        "<Object><Key>a&amp;b</Key></Object><Object><Key></Key></Object></Delete>"
    ).encode()
    root = parse(body, "Delete")
    assert parse_bool(child_text(root, "Quiet"))
    keys = [child_text(o, "Key") for o in root.findall("Object")]
    assert keys == ["a&b", ""]
    assert child_text(root, "Missing") is None
    with pytest.raises(MalformedXML):
        parse(body, "CompleteMultipartUpload")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"<Delete><Object>",
        b"not xml at all",
        # entity expansion and external entities are refused, not expanded
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]>'
        b"<Delete><Object><Key>&b;</Key></Object></Delete>",
        b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<Delete><Object><Key>&x;</Key></Object></Delete>",
    ],
)
def test_malformed_or_hostile_bodies_are_malformed_xml(body):
    with pytest.raises(MalformedXML):
        parse(body, "Delete")


def test_parse_bool_refuses_other_words():
    assert parse_bool(None) is False
    assert parse_bool(" TRUE ") is True
    with pytest.raises(MalformedXML):
        parse_bool("yes")
