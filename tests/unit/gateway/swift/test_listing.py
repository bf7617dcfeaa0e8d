"""Swift listings: parameters, paging over the real store, and the three formats."""

from __future__ import annotations

import json
from xml.etree import ElementTree

import pytest
from support.fakes import body_of

from kurastore.gateway.objects.api import PutOptions
from kurastore.gateway.swift import errors as swe
from kurastore.gateway.swift.listing import (
    ContainerEntry,
    ListingParams,
    ObjectEntry,
    Subdir,
    list_container,
    listing_format,
    listing_params,
    render_containers,
    render_objects,
    select_containers,
    swift_time,
)

ENTRY = ObjectEntry("a <&> b", "0cc175b9c0f1b6a831c399e269772661", 1, "text/plain",
                    1469123642.12345)


@pytest.mark.parametrize(
    ("query", "accept", "fmt"),
    [({}, "", "plain"), ({"format": "json"}, "", "json"), ({"format": "xml"}, "", "xml"),
     ({}, "application/json", "json"), ({}, "text/xml", "xml"),
     ({"format": "plain"}, "application/json", "plain"), ({"format": "text"}, "", "plain")],
)
def test_listing_format(query, accept, fmt):
    assert listing_format(query, {"Accept": accept}) == fmt


def test_listing_params():
    p = listing_params({"limit": "5", "marker": "m", "end_marker": "z", "prefix": "p",
                        "delimiter": "/", "reverse": "true"})
    assert p == ListingParams(5, "m", "z", "p", "/", True, None)
    with pytest.raises(swe.PreconditionFailed):
        listing_params({"limit": "10001"})
    # Swift ignores a limit that is not digits, and takes NUL in markers.
    assert listing_params({"limit": "x"}).limit == listing_params({"limit": "-1"}).limit == 10000
    assert listing_params({"marker": "a\x00", "delimiter": "-&"}).delimiter == "-&"


def test_swift_time_has_microseconds_and_no_zone():
    assert swift_time(1469123642.12345) == "2016-07-21T17:54:02.123450"


def test_render_objects_json():
    items = json.loads(render_objects("json", "c", [ENTRY, Subdir("d/")]))
    assert items == [
        {"name": "a <&> b", "hash": ENTRY.hash, "bytes": 1, "content_type": "text/plain",
         "last_modified": "2016-07-21T17:54:02.123450"},
        {"subdir": "d/"},
    ]


def test_render_objects_xml_and_plain():
    root = ElementTree.fromstring(render_objects("xml", "c&d", [ENTRY, Subdir("d/")]))
    assert root.tag == "container" and root.get("name") == "c&d"
    obj = root.find("object")
    assert obj is not None and obj.findtext("name") == "a <&> b"
    assert obj.findtext("bytes") == "1" and obj.findtext("hash") == ENTRY.hash
    assert root.find("subdir").get("name") == "d/"  # type: ignore[union-attr]
    assert render_objects("plain", "c", [ENTRY, Subdir("d/")]) == b"a <&> b\nd/\n"


def test_render_containers():
    entry = ContainerEntry("c1", 3, 30, 1469123642.0)
    assert json.loads(render_containers("json", "AUTH_x", [entry])) == [
        {"name": "c1", "count": 3, "bytes": 30, "last_modified": "2016-07-21T17:54:02.000000",
         "storage_policy": "Policy-0"}]
    root = ElementTree.fromstring(render_containers("xml", "AUTH_x", [entry]))
    assert root.get("name") == "AUTH_x" and root.find("container/count").text == "3"  # type: ignore[union-attr]
    assert root.findtext("container/storage_policy") == "Policy-0"


def test_select_containers():
    entries = [ContainerEntry(n, 0, 0, 0.0) for n in ("a", "b", "c", "d")]
    names = lambda p: [e.name for e in select_containers(entries, p)]  # noqa: E731
    assert names(ListingParams(limit=2)) == ["a", "b"]
    assert names(ListingParams(marker="a", end_marker="d")) == ["b", "c"]
    assert names(ListingParams(reverse=True, limit=3)) == ["d", "c", "b"]
    assert names(ListingParams(reverse=True, marker="d", end_marker="a")) == ["c", "b"]


KEYS = ["a", "b/1", "b/2", "c", "d/x/1", "d/y", "e"] + [f"many/{i:04d}" for i in range(1205)]


@pytest.fixture
async def filled(stack):
    await stack.service.create_bucket("lst", owner="o")
    for key in KEYS:  # inline objects: no pod traffic, quick
        await stack.service.put_object("lst", key, body_of(key.encode(), 64),
                                       PutOptions(content_type="text/plain"))
    return stack.service


def names(items):
    return [i.name for i in items]


async def test_paging_honours_limit_and_markers(filled):
    everything = await list_container(filled, "lst", ListingParams())
    assert names(everything) == sorted(KEYS)
    page = await list_container(filled, "lst", ListingParams(limit=3, marker="b/1"))
    assert names(page) == ["b/2", "c", "d/x/1"]
    bounded = await list_container(filled, "lst", ListingParams(marker="many/0998",
                                                                end_marker="many/1002"))
    assert names(bounded) == ["many/0999", "many/1000", "many/1001"]
    limited = await list_container(filled, "lst", ListingParams(limit=1100, prefix="many/"))
    assert len(limited) == 1100 and limited[-1].name == "many/1099"


async def test_delimiter_gives_subdirs_in_order(filled):
    items = await list_container(filled, "lst", ListingParams(delimiter="/"))
    assert [(type(i).__name__, i.name) for i in items] == [
        ("ObjectEntry", "a"), ("Subdir", "b/"), ("ObjectEntry", "c"), ("Subdir", "d/"),
        ("ObjectEntry", "e"), ("Subdir", "many/")]
    nested = await list_container(filled, "lst", ListingParams(prefix="d/", delimiter="/"))
    assert names(nested) == ["d/x/", "d/y"]


async def test_path_lists_one_level_without_subdirs(filled):
    items = await list_container(filled, "lst", ListingParams(path="d"))
    assert names(items) == ["d/y"]


async def test_reverse(filled):
    items = await list_container(filled, "lst", ListingParams(reverse=True, limit=3))
    assert names(items) == ["many/1204", "many/1203", "many/1202"]
    bounded = await list_container(filled, "lst", ListingParams(reverse=True, marker="c",
                                                                end_marker="a"))
    assert names(bounded) == ["b/2", "b/1"]


async def test_json_entries_carry_the_object_facts(filled):
    (entry,) = await list_container(filled, "lst", ListingParams(prefix="c"))
    assert isinstance(entry, ObjectEntry)
    assert (entry.bytes, entry.content_type) == (1, "text/plain")
    assert entry.hash == "4a8a08f09d37b73795649038408b5f33"  # md5("c")
