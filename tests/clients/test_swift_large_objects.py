"""Swift large objects as OpenStack Swift serves them, checked with
python-swiftclient (and raw HTTP where the client hides the answer's body)
against a real `kurastore server`: SLOs nested in SLOs, segment ranges, inline
data segments, ?part-number=, ?multipart-manifest=get&format=raw, the heartbeat
PUT, deleting a nested SLO with its segments, and the DLO rules for POST and
several ranges."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from support.cluster import ACCESS_KEY, SECRET_KEY
from support.swift import connect, remove_container
from swiftclient import client as swift_client
from swiftclient.exceptions import ClientException

pytestmark = pytest.mark.clients

SEG = 1000  # bytes of each segment a..d


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture(scope="module")
def conn(server) -> swift_client.Connection:
    return connect(server.endpoint, ACCESS_KEY, SECRET_KEY)


@pytest.fixture
def container(conn) -> Iterator[str]:
    name = f"slo-{uuid.uuid4().hex[:12]}"
    conn.put_container(name)
    yield name
    remove_container(conn, name)


@pytest.fixture
def segments(conn, container) -> dict[str, bytes]:
    """Segments a..d of SEG bytes each, named by their letter."""
    data = {letter: letter.encode() * SEG for letter in "abcd"}
    for letter, body in data.items():
        conn.put_object(container, letter, body)
    return data


def put_manifest(conn, container: str, name: str, entries: list[dict], **kw) -> str:
    return conn.put_object(container, name, json.dumps(entries),
                           query_string="multipart-manifest=put", **kw)


def seg(container: str, name: str, **extra) -> dict:
    return {"path": f"/{container}/{name}", **extra}


def raw_request(conn, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request with the connection's token; (status, headers, body)."""
    url, token = conn.get_auth()
    parsed = urlsplit(url)
    link = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    try:
        link.request(method, parsed.path + path, body=body,
                     headers={"X-Auth-Token": token, **(headers or {})})
        resp = link.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        link.close()


def test_nested_slo_reads_as_one_object(conn, container, segments) -> None:
    inner_etag = put_manifest(conn, container, "inner", [seg(container, "b"),
                                                         seg(container, "c")])
    assert inner_etag == md5((md5(segments["b"]) + md5(segments["c"])).encode())
    outer = [seg(container, "a"), seg(container, "inner", etag=inner_etag, size_bytes=2 * SEG),
             seg(container, "d")]
    outer_etag = put_manifest(conn, container, "outer", outer)
    assert outer_etag == md5((md5(segments["a"]) + inner_etag + md5(segments["d"])).encode())
    whole = segments["a"] + segments["b"] + segments["c"] + segments["d"]
    headers, body = conn.get_object(container, "outer")
    assert body == whole
    assert headers["etag"] == f'"{outer_etag}"'
    assert headers["content-length"] == str(4 * SEG)
    _, part = conn.get_object(container, "outer",
                              headers={"Range": f"bytes={SEG - 2}-{3 * SEG + 1}"})
    assert part == whole[SEG - 2:3 * SEG + 2]
    # The stored manifest marks the nested SLO and records its own etag and size.
    _, stored = conn.get_object(container, "outer", query_string="multipart-manifest=get")
    entry = json.loads(stored)[1]
    assert entry["sub_slo"] is True
    assert (entry["hash"], entry["bytes"]) == (inner_etag, 2 * SEG)


def test_segment_ranges_and_inline_data(conn, container, segments) -> None:
    data = b"-inline-"
    entries = [seg(container, "a", range="10-19"), {"data": base64.b64encode(data).decode()},
               seg(container, "b", range=f"-{SEG + 50}")]  # a suffix past the start: all of b
    etag = put_manifest(conn, container, "mixed", entries)
    a_etag, b_etag = md5(segments["a"]), md5(segments["b"])
    assert etag == md5(f"{a_etag}:10-19;{md5(data)}{b_etag}".encode())
    headers, body = conn.get_object(container, "mixed")
    assert body == segments["a"][10:20] + data + segments["b"]
    assert headers["content-length"] == str(10 + len(data) + SEG)
    _, stored = conn.get_object(container, "mixed", query_string="multipart-manifest=get")
    stored_entries = json.loads(stored)
    assert stored_entries[0]["range"] == "10-19"
    assert stored_entries[1] == {"data": base64.b64encode(data).decode()}
    assert "range" not in stored_entries[2]  # the whole object needs none


def test_bad_ranges_and_data_are_refused(conn, container, segments) -> None:
    cases = [
        ([seg(container, "a", range="5-2")], "Index 0: invalid range"),
        ([seg(container, "a", range="1-2,4-5")], "Index 0: multiple ranges"),
        ([seg(container, "a", range=f"{SEG}-")], "Unsatisfiable Range"),
        ([seg(container, "a"), {"data": "not base64!"}], "Index 1: data must be valid base64"),
        ([{"data": "YWJj"}], "require at least one object-backed segment"),
        ([seg(container, "a", teag="x")], 'Index 0: extraneous keys "teag"'),
    ]
    for entries, message in cases:
        with pytest.raises(ClientException) as err:
            put_manifest(conn, container, "bad", entries)
        assert err.value.http_status == 400
        assert message in err.value.http_response_content.decode()
    assert "bad" not in [o["name"] for o in conn.get_container(container)[1]]


def test_part_number_get_and_head(conn, container, segments) -> None:
    put_manifest(conn, container, "parts", [seg(container, letter) for letter in "abc"])
    headers, body = conn.get_object(container, "parts", query_string="part-number=2")
    assert body == segments["b"]
    assert headers["content-range"] == f"bytes {SEG}-{2 * SEG - 1}/{3 * SEG}"
    assert headers["x-parts-count"] == "3"
    head = conn.head_object(container, "parts", query_string="part-number=3")
    assert head["content-length"] == str(SEG) and head["x-parts-count"] == "3"
    status, got, text = raw_request(conn, "GET", f"/{container}/parts?part-number=4")
    assert status == 416 and text == b"The requested part number is not satisfiable"
    assert got["content-range"] == f"bytes */{3 * SEG}"
    with pytest.raises(ClientException) as err:
        conn.get_object(container, "parts", query_string="part-number=0")
    assert err.value.http_status == 400
    # COPY applies part-number to its source: only that part is written.
    conn.put_object(container, "copied", b"", query_string="part-number=2",
                    headers={"X-Copy-From": f"/{container}/parts"})
    assert conn.get_object(container, "copied")[1] == segments["b"]


def test_manifest_raw_format_round_trips(conn, container, segments) -> None:
    put_manifest(conn, container, "orig", [seg(container, "c"), seg(container, "a", range="0-9")])
    headers, raw = conn.get_object(container, "orig",
                                   query_string="multipart-manifest=get&format=raw")
    assert headers["etag"] == md5(raw)
    assert json.loads(raw) == [
        {"path": f"/{container}/c", "etag": md5(segments["c"]), "size_bytes": SEG},
        {"path": f"/{container}/a", "etag": md5(segments["a"]), "size_bytes": SEG,
         "range": "0-9"}]
    put_manifest(conn, container, "again", json.loads(raw))
    assert conn.get_object(container, "again")[1] == segments["c"] + segments["a"][:10]
    # The answer names the manifest it came from by the stored form's MD5.
    _, stored = conn.get_object(container, "orig", query_string="multipart-manifest=get")
    assert conn.head_object(container, "orig")["x-manifest-etag"] == md5(stored)


def test_replaced_or_too_deep_sub_manifest_is_a_conflict(conn, container, segments) -> None:
    inner = put_manifest(conn, container, "inner", [seg(container, "a")])
    put_manifest(conn, container, "outer", [seg(container, "inner", etag=inner)])
    put_manifest(conn, container, "inner", [seg(container, "b")])  # another SLO now
    with pytest.raises(ClientException) as err:
        conn.get_object(container, "outer")
    assert err.value.http_status == 409
    # Ten levels of manifests read; an eleventh is refused, as Swift's proxy does.
    put_manifest(conn, container, "level-1", [seg(container, "c")])
    for n in range(2, 12):
        put_manifest(conn, container, f"level-{n}", [seg(container, f"level-{n - 1}")])
    assert conn.get_object(container, "level-10")[1] == segments["c"]
    with pytest.raises(ClientException) as err:
        conn.get_object(container, "level-11")
    assert err.value.http_status == 409


def test_delete_nested_slo_with_its_segments(conn, container, segments) -> None:
    put_manifest(conn, container, "inner", [seg(container, "b"), seg(container, "c")])
    put_manifest(conn, container, "outer", [seg(container, "a"), seg(container, "inner")])
    status, _, body = raw_request(conn, "DELETE", f"/{container}/outer?multipart-manifest=delete",
                                  headers={"Accept": "application/json"})
    assert status == 200
    summary = json.loads(body)
    assert summary["Response Status"] == "200 OK" and summary["Errors"] == []
    assert summary["Number Deleted"] == 5  # a, b, c, inner, outer
    assert [o["name"] for o in conn.get_container(container)[1]] == ["d"]


def test_heartbeat_put_answers_202_then_the_outcome(conn, container, segments) -> None:
    path = f"/{container}/beat?multipart-manifest=put&heartbeat=on"
    good = json.dumps([seg(container, "a"), seg(container, "b")]).encode()
    status, headers, body = raw_request(conn, "PUT", path, good,
                                        headers={"Accept": "application/json"})
    assert status == 202 and headers.get("transfer-encoding") == "chunked"
    outcome = json.loads(body)
    assert outcome["Response Status"] == "201 Created"
    assert outcome["Etag"] == f'"{md5((md5(segments["a"]) + md5(segments["b"])).encode())}"'
    assert conn.get_object(container, "beat")[1] == segments["a"] + segments["b"]
    bad = json.dumps([seg(container, "a"), {"path": f"/{container}/missing"}]).encode()
    status, _, body = raw_request(conn, "PUT", path, bad)
    assert status == 202
    lines = body.decode().split("\n")
    assert "Response Status: 400 Bad Request" in lines
    assert lines[-3:] == ["Errors:", f"/{container}/missing, 404 Not Found", ""]


def test_dlo_post_without_manifest_header_ends_the_dlo(conn, container, segments) -> None:
    conn.put_object(container, "dlo", b"manifest-body",
                    headers={"X-Object-Manifest": f"{container}/"})
    assert conn.get_object(container, "dlo")[1].startswith(segments["a"])
    conn.post_object(container, "dlo", headers={"X-Object-Meta-Color": "red"})
    headers, body = conn.get_object(container, "dlo")
    assert body == b"manifest-body"
    assert "x-object-manifest" not in headers and headers["x-object-meta-color"] == "red"


def test_dlo_ignores_several_ranges(conn, container, segments) -> None:
    conn.put_object(container, "dlo", b"", headers={"X-Object-Manifest": f"{container}/"})
    rd: dict = {}
    _, body = conn.get_object(container, "dlo", headers={"Range": "bytes=0-4,10-14"},
                              response_dict=rd)
    assert rd["status"] == 200
    assert body == b"".join(segments[letter] for letter in "abcd")
