"""Swift symlinks against a real `kurastore server`, with python-swiftclient
(and raw HTTP where the client hides an answer: 307, Content-Location on
errors): links read as their targets, ?symlink=get, static links pinned to an
etag, POST and COPY of a link, links across accounts, listings, links as SLO
segments and in versioned containers."""

from __future__ import annotations

import http.client
import json
import uuid
from collections.abc import Iterator
from hashlib import md5
from urllib.parse import urlsplit

import pytest
from support.cluster import ACCESS_KEY, SECRET_KEY, create_user
from support.swift import Containers, connect, remove_container
from swiftclient import client as swift_client
from swiftclient.exceptions import ClientException

pytestmark = pytest.mark.clients

EMPTY_MD5 = md5(b"").hexdigest()


@pytest.fixture(scope="module")
def owner(server) -> swift_client.Connection:
    return connect(server.endpoint, ACCESS_KEY, SECRET_KEY)


@pytest.fixture
def containers(owner) -> Iterator[Containers]:
    made = Containers(owner, "swl")
    yield made
    made.remove_all()


def _account(conn: swift_client.Connection) -> str:
    return urlsplit(conn.get_auth()[0]).path.rsplit("/", 1)[1]


def _raw(conn: swift_client.Connection, method: str, path: str,
         headers: dict[str, str] | None = None, body: bytes = b""
         ) -> tuple[int, dict[str, str], bytes]:
    """One request with the connection's token; (status, headers, body)."""
    url, token = conn.get_auth()
    parts = urlsplit(url)
    http_conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    http_conn.request(method, f"{parts.path}/{path}", body=body,
                      headers={"X-Auth-Token": token, **(headers or {})})
    resp = http_conn.getresponse()
    data = resp.read()
    http_conn.close()
    return resp.status, dict(resp.headers), data


def _link(conn: swift_client.Connection, container: str, name: str, target: str,
          **headers: str) -> None:
    conn.put_object(container, name, b"", headers={"X-Symlink-Target": target, **headers})


def test_info_announces_symlinks(owner) -> None:
    assert owner.get_capabilities()["symlink"] == {"symloop_max": 2, "static_links": True}


def test_a_link_reads_as_its_target(owner, containers) -> None:
    links, targets = containers.new(), containers.new()
    put = owner.put_object(targets, "doc 1", b"target body", content_type="text/x-doc",
                           headers={"X-Object-Meta-Color": "blue"})
    _link(owner, links, "link", f"{targets}/doc%201")
    location = f"/v1/{_account(owner)}/{targets}/doc%201"

    headers, body = owner.get_object(links, "link")
    assert body == b"target body" and headers["etag"] == put
    assert headers["content-type"] == "text/x-doc" and headers["x-object-meta-color"] == "blue"
    status, raw_headers, _ = _raw(owner, "GET", f"{links}/link")  # swiftclient unquotes
    assert status == 200 and raw_headers["Content-Location"] == location
    assert owner.head_object(links, "link")["content-length"] == "11"
    headers, body = owner.get_object(links, "link", headers={"Range": "bytes=7-10"})
    assert body == b"body"

    # ?symlink=get answers the link itself
    headers, body = owner.get_object(links, "link", query_string="symlink=get")
    assert body == b"" and headers["etag"] == EMPTY_MD5
    assert headers["x-symlink-target"] == f"{targets}/doc 1"
    assert headers["content-type"] == "application/symlink"
    assert "content-location" not in headers

    # a dangling link is a 404 that still says where it points
    owner.delete_object(targets, "doc 1")
    status, headers, _ = _raw(owner, "GET", f"{links}/link")
    assert status == 404 and headers["Content-Location"] == location
    # and deleting the link leaves the target alone
    owner.put_object(targets, "doc 1", b"back")
    owner.delete_object(links, "link")
    assert owner.get_object(targets, "doc 1")[1] == b"back"


def test_chains_end_after_two_links(owner, containers) -> None:
    c = containers.new()
    owner.put_object(c, "target", b"data")
    _link(owner, c, "one", f"{c}/target")
    _link(owner, c, "two", f"{c}/one")
    _link(owner, c, "three", f"{c}/two")
    assert owner.get_object(c, "two")[1] == b"data"
    status, _, body = _raw(owner, "GET", f"{c}/three")
    assert status == 409
    assert body == b"Too many levels of symbolic links, maximum allowed is 2"
    assert owner.head_object(c, "three", query_string="symlink=get")["x-symlink-target"] \
        == f"{c}/two"


def test_link_puts_are_checked(owner, containers) -> None:
    c = containers.new()
    owner.put_object(c, "target", b"data")
    cases = [
        ({"X-Symlink-Target": f"{c}/target"}, b"x", 400,
         b"Symlink requests require a zero byte body"),
        ({"X-Symlink-Target": "target"}, b"", 412,
         b"X-Symlink-Target header must be of the form <container name>/<object name>"),
        ({"X-Symlink-Target": f"{c}/new"}, b"", 400, b"Symlink cannot target itself"),
        ({"X-Symlink-Target": f"{c}/target", "X-Symlink-Target-Etag": "nope"}, b"", 409,
         f"Object Etag '{md5(b'data').hexdigest()}' does not match X-Symlink-Target-Etag "
         "header 'nope'".encode()),
        ({"X-Symlink-Target": f"{c}/missing", "X-Symlink-Target-Etag": EMPTY_MD5}, b"", 409,
         b"X-Symlink-Target does not exist"),
    ]
    for headers, body, status, text in cases:
        got = _raw(owner, "PUT", f"{c}/new", headers, body)
        assert (got[0], got[2]) == (status, text), headers
    with pytest.raises(ClientException) as err:
        owner.head_object(c, "new")
    assert err.value.http_status == 404  # nothing was written


def test_static_link_pins_its_target(owner, containers) -> None:
    c = containers.new()
    etag = owner.put_object(c, "target", b"version one", content_type="application/target")
    _link(owner, c, "static", f"{c}/target", **{"X-Symlink-Target-Etag": etag})
    _link(owner, c, "dynamic", f"{c}/target")
    assert owner.get_object(c, "static")[1] == b"version one"

    _, listing = owner.get_container(c)
    entries = {e["name"]: e for e in listing}
    path = f"/v1/{_account(owner)}/{c}/target"
    assert entries["static"]["symlink_path"] == path
    assert entries["static"]["symlink_etag"] == etag
    assert entries["static"]["symlink_bytes"] == len(b"version one")
    assert entries["static"]["content_type"] == "application/target"  # the target's
    assert entries["static"]["hash"] == EMPTY_MD5 and entries["static"]["bytes"] == 0
    assert entries["dynamic"]["symlink_path"] == path
    assert entries["dynamic"]["content_type"] == "application/symlink"
    assert "symlink_etag" not in entries["dynamic"] and "symlink_path" not in entries["target"]

    owner.put_object(c, "target", b"version two")
    status, headers, _ = _raw(owner, "GET", f"{c}/static")
    assert status == 409 and headers["Content-Location"] == path
    assert owner.get_object(c, "dynamic")[1] == b"version two"


def test_post_to_a_link_updates_the_link_and_redirects(owner, containers) -> None:
    c = containers.new()
    owner.put_object(c, "target", b"data")
    _link(owner, c, "link", f"{c}/target")
    status, headers, _ = _raw(owner, "POST", f"{c}/link", {"X-Object-Meta-Alpha": "apple"})
    assert status == 307
    assert headers["Location"] == f"/v1/{_account(owner)}/{c}/target"
    itself = owner.head_object(c, "link", query_string="symlink=get")
    assert itself["x-object-meta-alpha"] == "apple" and itself["x-symlink-target"] == f"{c}/target"
    assert "x-object-meta-alpha" not in owner.head_object(c, "link")  # the target's metadata
    assert owner.get_object(c, "link")[1] == b"data"  # still a link

    status, _, body = _raw(owner, "POST", f"{c}/target", {"X-Symlink-Target": f"{c}/other"})
    assert (status, body) == (400, b"A PUT request is required to set a symlink target")


def test_copies_follow_the_link_unless_asked_for_it(owner, containers) -> None:
    c = containers.new()
    owner.put_object(c, "target", b"data")
    _link(owner, c, "link", f"{c}/target")

    owner.copy_object(c, "link", f"/{c}/copy")
    headers, body = owner.get_object(c, "copy")
    assert body == b"data" and "content-location" not in headers
    assert "x-symlink-target" not in owner.head_object(c, "copy", query_string="symlink=get")

    status, _, _ = _raw(owner, "COPY", f"{c}/link?symlink=get", {"Destination": f"{c}/link2"})
    assert status == 201
    assert owner.head_object(c, "link2", query_string="symlink=get")["x-symlink-target"] \
        == f"{c}/target"
    owner.put_object(c, "target", b"changed")
    assert owner.get_object(c, "link2")[1] == b"changed"


def test_links_across_accounts_need_read_access(server, owner, containers) -> None:
    user = create_user(server, f"swl-{uuid.uuid4().hex[:8]}")
    theirs = connect(server.endpoint, user["user"], user["secret_key"])
    source = containers.new()
    owner.put_object(source, "shared", b"shared data")
    mine = f"swl-{uuid.uuid4().hex[:12]}"
    theirs.put_container(mine)
    try:
        _link(theirs, mine, "link", f"{source}/shared",
              **{"X-Symlink-Target-Account": _account(owner)})
        location = f"/v1/{_account(owner)}/{source}/shared"
        status, headers, _ = _raw(theirs, "GET", f"{mine}/link")
        assert status == 403 and headers["Content-Location"] == location
        assert theirs.head_object(mine, "link", query_string="symlink=get")[
            "x-symlink-target-account"] == _account(owner)
        owner.post_container(source, {"X-Container-Read": user["user"]})
        headers, body = theirs.get_object(mine, "link")
        assert body == b"shared data" and headers["content-location"] == location
    finally:
        remove_container(theirs, mine)


def test_slo_segments_may_be_links(owner, containers) -> None:
    c = containers.new()
    owner.put_object(c, "seg-a", b"a" * 10)
    owner.put_object(c, "seg-b", b"b" * 10)
    _link(owner, c, "link-a", f"{c}/seg-a")
    _link(owner, c, "link-b", f"{c}/seg-b")
    manifest = [{"path": f"/{c}/link-a"}, {"path": f"/{c}/link-b"}]
    owner.put_object(c, "big", json.dumps(manifest), query_string="multipart-manifest=put")
    headers, body = owner.get_object(c, "big")
    assert body == b"a" * 10 + b"b" * 10
    assert headers["content-length"] == "20"
    assert owner.get_object(c, "big", headers={"Range": "bytes=8-11"})[1] == b"aabb"


def test_versioned_container_keeps_links_as_links(owner, containers) -> None:
    archive = containers.new()
    c = containers.new(**{"X-Versions-Location": archive})
    owner.put_object(c, "target", b"target data")
    _link(owner, c, "link", f"{c}/target", **{"Content-Type": "application/symlink"})
    owner.put_object(c, "link", b"not a link")
    _, listing = owner.get_container(archive)
    assert [e["content_type"] for e in listing] == ["application/symlink"]
    archived = listing[0]["name"]
    assert owner.get_object(archive, archived)[1] == b"target data"
    assert owner.head_object(archive, archived, query_string="symlink=get")[
        "x-symlink-target"] == f"{c}/target"
    owner.delete_object(c, "link")  # brings the link back
    assert owner.get_object(c, "link")[1] == b"target data"
    assert "x-symlink-target" in owner.head_object(c, "link", query_string="symlink=get")
