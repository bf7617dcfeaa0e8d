"""Swift behaviours OpenStack Swift's own functional tests pin down, checked with
python-swiftclient (and raw HTTP where a client would hide the answer) against a
real `kurastore server`: container ACLs naming another account's user, copies
across accounts, path= listings with directory markers, multi-character
delimiters, what 304/412/416 answers carry, ranged copies, malformed paths and
metadata that is not UTF-8."""

from __future__ import annotations

import http.client
import json
import os
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import pytest
from support.cluster import ACCESS_KEY, SECRET_KEY, create_user
from support.swift import Containers, connect, remove_container
from swiftclient import client as swift_client
from swiftclient.exceptions import ClientException

pytestmark = pytest.mark.clients


@pytest.fixture(scope="module")
def owner(server) -> swift_client.Connection:
    return connect(server.endpoint, ACCESS_KEY, SECRET_KEY)


@pytest.fixture(scope="module")
def stranger(server) -> tuple[swift_client.Connection, dict]:
    """Another user, logging in as "<account label>:<user name>" as TempAuth users do."""
    user = create_user(server, f"sw-{uuid.uuid4().hex[:8]}")
    return connect(server.endpoint, f"team:{user['user']}", user["secret_key"]), user


@pytest.fixture
def containers(owner) -> Iterator[Containers]:
    made = Containers(owner, "sws")
    yield made
    made.remove_all()


def _raw(conn: swift_client.Connection, method: str, path: str,
         headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    """One request with the connection's token and the path exactly as given (the
    body read into `.data`)."""
    url, token = conn.get_auth()
    parts = urlsplit(url)
    http_conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    http_conn.request(method, path, headers={"X-Auth-Token": token, **(headers or {})})
    resp = http_conn.getresponse()
    resp.data = resp.read()  # type: ignore[attr-defined]
    http_conn.close()
    return resp


def test_container_acls_let_another_account_in(owner, stranger, containers) -> None:
    theirs, user = stranger
    name = containers.new()
    owner.put_object(name, "doc", b"shared")
    # The owner's account, reached with the stranger's token: 403 without a grant.
    other_url = owner.get_auth()[0]
    their_token = theirs.get_auth()[1]
    with pytest.raises(ClientException) as err:
        swift_client.get_container(other_url, their_token, name)
    assert err.value.http_status == 403
    with pytest.raises(ClientException) as err:  # a missing container tells nothing either
        swift_client.get_container(other_url, their_token, name + "-missing")
    assert err.value.http_status == 403

    owner.post_container(name, {"X-Container-Read": f"team:{user['user']}"})
    _, listing = swift_client.get_container(other_url, their_token, name)
    assert [o["name"] for o in listing] == ["doc"]
    assert swift_client.get_object(other_url, their_token, name, "doc")[1] == b"shared"
    head = swift_client.head_container(other_url, their_token, name)
    assert "x-container-read" not in head  # the ACL is the owner's business
    with pytest.raises(ClientException) as err:  # read is not write
        swift_client.put_object(other_url, their_token, name, "new", b"x")
    assert err.value.http_status == 403

    owner.post_container(name, {"X-Container-Write": f"AUTH_{user['user_id']}"})
    swift_client.put_object(other_url, their_token, name, "new", b"theirs")
    assert owner.get_object(name, "new")[1] == b"theirs"
    with pytest.raises(ClientException) as err:  # container metadata stays the owner's
        swift_client.post_container(other_url, their_token, name, {"X-Container-Meta-A": "b"})
    assert err.value.http_status == 403

    owner.post_container(name, {"X-Container-Read": "", "X-Container-Write": ""})
    with pytest.raises(ClientException) as err:
        swift_client.get_object(other_url, their_token, name, "doc")
    assert err.value.http_status == 403


def test_copy_across_accounts_needs_the_grants(owner, stranger, containers) -> None:
    theirs, user = stranger
    source = containers.new()
    owner.put_object(source, "src", b"payload", headers={"X-Object-Meta-Color": "blue"})
    their_url, their_token = theirs.get_auth()
    target = f"swt-{uuid.uuid4().hex[:12]}"
    theirs.put_container(target)
    try:
        owner_account = urlsplit(owner.get_auth()[0]).path.rsplit("/", 1)[1]
        copy_from = {"X-Copy-From": f"{source}/src", "X-Copy-From-Account": owner_account}
        with pytest.raises(ClientException) as err:
            swift_client.put_object(their_url, their_token, target, "copy", b"",
                                    headers=copy_from)
        assert err.value.http_status == 403
        owner.post_container(source, {"X-Container-Read": user["user"]})
        swift_client.put_object(their_url, their_token, target, "copy", b"", headers=copy_from)
        headers, body = theirs.get_object(target, "copy")
        assert body == b"payload" and headers["x-object-meta-color"] == "blue"
    finally:
        remove_container(theirs, target)


def test_path_listing_shows_directory_markers(owner, containers) -> None:
    name = containers.new()
    for obj in ("a/", "a/one", "a/b/", "a/b/two", "top"):
        owner.put_object(name, obj, b"" if obj.endswith("/") else b"x",
                         content_type="application/directory" if obj.endswith("/") else None)
    _, inside = owner.get_container(name, path="a")
    assert [o["name"] for o in inside] == ["a/b/", "a/one"]
    assert inside[0]["content_type"] == "application/directory"
    _, deeper = owner.get_container(name, path="a/b")
    assert [o["name"] for o in deeper] == ["a/b/two"]  # not "a/b/" itself


def test_listing_parameters_as_swift_reads_them(owner, containers) -> None:
    name = containers.new()
    for obj in ("test", "test-&bar", "test-&foo"):
        owner.put_object(name, obj, b"x")
    _, grouped = owner.get_container(name, delimiter="-&")
    assert [o.get("name") or o.get("subdir") for o in grouped] == ["test", "test-&"]
    account = urlsplit(owner.get_auth()[0]).path
    limited = _raw(owner, "GET", f"{account}/{name}?limit=2.0")  # not digits: no limit
    assert limited.status == 200 and len(limited.data.splitlines()) == 3
    _, after = owner.get_container(name, marker="test-&bar\x00")
    assert [o["name"] for o in after] == ["test-&foo"]
    head = _raw(owner, "HEAD", f"{account}/{name}?format=json")
    assert head.status == 204
    assert head.getheader("Content-Type") == "application/json; charset=utf-8"


def test_conditional_and_ranged_answers_describe_the_object(owner, containers) -> None:
    name = containers.new()
    data = os.urandom(1000)
    etag = owner.put_object(name, "o", data)
    path = urlsplit(owner.get_auth()[0]).path + f"/{name}/o"
    for headers, status in (({"If-Match": "bogus"}, 412), ({"If-None-Match": etag}, 304),
                            ({"Range": "bytes=5000-"}, 416)):
        resp = _raw(owner, "GET", path, headers)
        assert resp.status == status
        assert resp.getheader("Etag") == etag and resp.getheader("Accept-Ranges") == "bytes"
    # An asctime date is GMT; Swift checks it even when If-Match matched.
    old = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(time.time() - 3600))
    resp = _raw(owner, "GET", path, {"If-Match": etag, "If-Unmodified-Since": old})
    assert resp.status == 412
    headers, part = owner.get_object(name, "o", headers={"Range": "BYTES = 10 - 19"})
    assert part == data[10:20] and headers["content-range"] == "bytes 10-19/1000"

    owner.put_object(name, "slice", b"", headers={"X-Copy-From": f"{name}/o",
                                                    "Range": "bytes=100-199"})
    assert owner.get_object(name, "slice")[1] == data[100:200]


def test_malformed_paths_get_swift_answers(owner, containers) -> None:
    assert _raw(owner, "PUT", "/v1").status == 412
    assert _raw(owner, "GET", "/v1//c/o").status == 404
    account = urlsplit(owner.get_auth()[0]).path
    assert _raw(owner, "GET", f"{account}/%ff%fe").status == 412
    resp = _raw(owner, "GET", "/info%20asdf")
    assert resp.status == 412 and resp.getheader("X-Openstack-Request-Id")
    # A 401 names the realm it was for, percent-encoded so it cannot break the header.
    http_conn = http.client.HTTPConnection(*urlsplit(owner.get_auth()[0]).netloc.split(":"))
    hax = 'AUTH_x"\nEvil: 1'
    http_conn.request("GET", "/v1/" + quote(hax))
    resp = http_conn.getresponse()
    assert resp.status == 401 and resp.getheader("Evil") is None
    assert resp.getheader("Www-Authenticate") == f'Swift realm="{quote(hax)}"'
    http_conn.close()


def test_metadata_that_is_not_utf8_is_accepted(owner, containers) -> None:
    name = containers.new()
    raw = "caf\u00e9".encode()[:-1].decode("utf-8", "surrogateescape")  # a cut UTF-8 sequence
    account = urlsplit(owner.get_auth()[0]).path
    url, token = owner.get_auth()
    parts = urlsplit(url)
    http_conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    http_conn.putrequest("PUT", f"{account}/{name}/m")
    http_conn.putheader("X-Auth-Token", token)
    http_conn.putheader("X-Object-Meta-Word", raw.encode("utf-8", "surrogateescape"))
    http_conn.putheader("Content-Length", "1")
    http_conn.endheaders(b"x")
    assert http_conn.getresponse().status == 201
    http_conn.close()
    assert owner.head_object(name, "m")["x-object-meta-word"] == "caf\ufffd"


def test_bulk_delete(server, owner, containers) -> None:
    full = containers.new()
    gone = containers.new()
    for i in range(3):
        owner.put_object(full, f"o{i}", b"x")
    account = urlsplit(owner.get_auth()[0]).path
    url, token = owner.get_auth()
    parts = urlsplit(url)
    http_conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    body = f"/{full}/o0\n{quote(full)}/o1\n/{full}/missing\n/{full}\n/{gone}\n".encode()
    http_conn.request("POST", f"{account}?bulk-delete", body, {
        "X-Auth-Token": token, "Accept": "application/json", "Content-Type": "text/plain"})
    resp = http_conn.getresponse()
    answer = json.loads(resp.read())
    http_conn.close()
    assert resp.status == 200
    assert answer["Number Deleted"] == 3 and answer["Number Not Found"] == 1
    assert answer["Errors"] == [[f"/{full}", "409 Conflict"]]  # o2 is still in it
    assert answer["Response Status"] == "400 Bad Request"
    assert [o["name"] for o in owner.get_container(full)[1]] == ["o2"]
    with pytest.raises(ClientException):
        owner.head_container(gone)
    containers.forget(gone)


@pytest.mark.parametrize("header", ["X-Versions-Location", "X-History-Location"])
def test_versioned_writes(owner, containers, header) -> None:
    archive = containers.new()
    name = containers.new(**{header: quote(archive)})
    assert owner.head_container(name)[header.lower()] == quote(archive)
    for body, ctype in ((b"one", "text/one"), (b"two", "text/two"), (b"three", "text/three")):
        owner.put_object(name, "doc", body, content_type=ctype)
    owner.post_object(name, "doc", {"X-Object-Meta-Note": "no new version"})
    _, archived = owner.get_container(archive)
    prefix = "003doc/"  # the name's length in three hex digits, the name, a slash
    assert [o["content_type"] for o in archived] == ["text/one", "text/two"]
    assert all(o["name"].startswith(prefix) for o in archived)
    assert owner.get_object(archive, archived[0]["name"])[1] == b"one"

    owner.delete_object(name, "doc")
    if header == "X-Versions-Location":  # a stack: the previous version comes back
        assert owner.get_object(name, "doc")[1] == b"two"
        assert len(owner.get_container(archive)[1]) == 1
    else:  # a history: the object is gone, its last version and a marker archived
        with pytest.raises(ClientException) as err:
            owner.get_object(name, "doc")
        assert err.value.http_status == 404
        kinds = [o["content_type"] for o in owner.get_container(archive)[1]]
        assert kinds == ["text/one", "text/two", "text/three",
                         "application/x-deleted;swift_versions_deleted=1"]
    owner.post_container(name, {header: ""})  # versioning off
    assert header.lower() not in owner.head_container(name)
    with pytest.raises(ClientException) as err:  # one mode at a time
        owner.post_container(name, {"X-Versions-Location": archive,
                                    "X-History-Location": archive})
    assert err.value.http_status == 400


def test_cors_for_browsers(owner, containers) -> None:
    name = containers.new(**{
        "X-Container-Meta-Access-Control-Allow-Origin": "https://app.example",
        "X-Container-Meta-Access-Control-Max-Age": "600"})
    owner.put_object(name, "pic", b"x", headers={"X-Object-Meta-Color": "red"})
    path = f"{urlsplit(owner.get_auth()[0]).path}/{name}/pic"
    parts = urlsplit(owner.get_auth()[0])

    def ask(method: str, headers: dict[str, str]) -> http.client.HTTPResponse:
        http_conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        http_conn.request(method, path, headers=headers)  # no token: a browser's preflight
        resp = http_conn.getresponse()
        resp.read()
        http_conn.close()
        return resp

    ok = ask("OPTIONS", {"Origin": "https://app.example", "Access-Control-Request-Method": "PUT",
                         "Access-Control-Request-Headers": "x-auth-token"})
    assert ok.status == 200
    assert ok.getheader("Access-Control-Allow-Origin") == "https://app.example"
    assert ok.getheader("Access-Control-Allow-Headers") == "x-auth-token"
    assert ok.getheader("Access-Control-Max-Age") == "600"
    assert ask("OPTIONS", {"Origin": "https://evil.example",
                           "Access-Control-Request-Method": "GET"}).status == 401
    got = _raw(owner, "GET", path, {"Origin": "https://app.example"})
    assert got.getheader("Access-Control-Allow-Origin") == "https://app.example"
    assert "x-object-meta-color" in got.getheader("Access-Control-Expose-Headers").split(", ")
    assert _raw(owner, "GET", path, {"Origin": "https://evil.example"}).getheader(
        "Access-Control-Allow-Origin") is None


def test_expiry_headers_as_swift_reads_them(owner, containers) -> None:
    name = containers.new()
    owner.put_object(name, "far", b"x", headers={"X-Delete-At": "1" * 20})
    assert owner.head_object(name, "far")["x-delete-at"] == "9999999999"  # Swift's ceiling
    account = urlsplit(owner.get_auth()[0]).path
    assert _raw(owner, "DELETE", f"{account}/{name}/far", {"X-If-Delete-At": "soon"}).status == 400
    assert _raw(owner, "DELETE", f"{account}/{name}/far",
                {"X-If-Delete-At": "1234567890"}).status == 412
    resp = _raw(owner, "DELETE", f"{account}/{name}/far", {"X-If-Delete-At": "9999999999"})
    assert resp.status == 204 and resp.getheader("Content-Type") == "text/html; charset=UTF-8"
