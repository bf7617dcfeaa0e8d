"""Swift TempURL against a real `kurastore server`: URLs made by python-swiftclient
(`generate_temp_url` and the `swift tempurl` command) and used with plain urllib,
no token, as a browser or a downstream service would use them."""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from support.cluster import ACCESS_KEY, SECRET_KEY
from support.swift import connect, remove_container
from swiftclient import client as swift_client
from swiftclient.exceptions import ClientException
from swiftclient.utils import generate_temp_url

pytestmark = pytest.mark.clients

ACCOUNT_KEY = "account-secret-" + uuid.uuid4().hex
CONTAINER_KEY = "container-secret-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def conn(server) -> Iterator[swift_client.Connection]:
    conn = connect(server.endpoint, ACCESS_KEY, SECRET_KEY)
    conn.post_account({"X-Account-Meta-Temp-URL-Key": ACCOUNT_KEY})
    yield conn
    conn.post_account({"X-Account-Meta-Temp-URL-Key": ""})


@pytest.fixture
def container(conn) -> Iterator[str]:
    name = f"tu-{uuid.uuid4().hex[:12]}"
    conn.put_container(name)
    yield name
    remove_container(conn, name)


def _path(conn: swift_client.Connection, container: str, obj: str) -> str:
    return f"{urlsplit(conn.get_auth()[0]).path}/{container}/{obj}"


def _open(server, url: str, method: str = "GET", data: bytes | None = None,
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(server.endpoint + url, data=data, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_a_signed_get_needs_no_token_and_ends(server, conn, container) -> None:
    conn.put_object(container, "report.csv", b"a,b\n", headers={
        "X-Object-Meta-Owner": "finance", "X-Object-Meta-Public-Title": "Q3"})
    path = _path(conn, container, "report.csv")
    url = generate_temp_url(path, 60, ACCOUNT_KEY, "GET")
    status, headers, body = _open(server, url)
    assert (status, body) == (200, b"a,b\n")
    assert headers["Content-Disposition"].startswith('attachment; filename="report.csv"')
    assert "X-Object-Meta-Owner" not in headers  # private metadata stays private
    assert headers["X-Object-Meta-Public-Title"] == "Q3"
    assert _open(server, url, "HEAD")[0] == 200  # a GET URL allows HEAD
    assert _open(server, url + "&filename=q3.csv")[1]["Content-Disposition"].startswith(
        'attachment; filename="q3.csv"')
    assert _open(server, url + "&inline")[1]["Content-Disposition"] == "inline"

    for bad in (url.replace("report", "other"),                       # another object
                generate_temp_url(path, 60, "wrong-key", "GET"),       # another key
                generate_temp_url(path, int(time.time()) - 1, ACCOUNT_KEY, "GET",
                                  absolute=True)):                     # expired
        status, _, body = _open(server, bad)
        assert status == 401 and b"Temp URL invalid" in body
    assert _open(server, url, "DELETE")[0] == 401  # signed for GET only
    assert conn.head_object(container, "report.csv")  # nothing changed


def test_a_signed_put_uploads_but_cannot_make_a_manifest(server, conn, container) -> None:
    url = generate_temp_url(_path(conn, container, "upload.bin"), 60, ACCOUNT_KEY, "PUT",
                            digest="sha512")
    assert _open(server, url, "PUT", b"from a browser")[0] == 201
    assert conn.get_object(container, "upload.bin")[1] == b"from a browser"
    status, _, body = _open(server, url, "PUT", b"", {"X-Object-Manifest": f"{container}/"})
    assert status == 400 and b"X-Object-Manifest" in body
    assert conn.get_object(container, "upload.bin")[1] == b"from a browser"


def test_a_container_key_opens_its_container_only(server, conn, container) -> None:
    conn.post_container(container, {"X-Container-Meta-Temp-URL-Key": CONTAINER_KEY})
    conn.put_object(container, "in", b"inside")
    url = generate_temp_url(_path(conn, container, "in"), 60, CONTAINER_KEY, "GET")
    assert _open(server, url)[2] == b"inside"
    other = f"tu-{uuid.uuid4().hex[:12]}"
    conn.put_container(other)
    try:
        conn.put_object(other, "in", b"elsewhere")
        url = generate_temp_url(_path(conn, other, "in"), 60, CONTAINER_KEY, "GET")
        assert _open(server, url)[0] == 401
    finally:
        remove_container(conn, other)


def test_prefix_urls_and_the_swift_command(server, conn, container) -> None:
    for name in ("shared/a", "shared/b", "private"):
        conn.put_object(container, name, name.encode())
    prefix_path = _path(conn, container, "shared/")
    url = generate_temp_url(prefix_path, 60, ACCOUNT_KEY, "GET", prefix=True)
    query = url.split("?", 1)[1]
    base = _path(conn, container, "")
    assert _open(server, f"{base}shared/b?{query}")[2] == b"shared/b"
    assert _open(server, f"{base}private?{query}")[0] == 401

    swift = shutil.which("swift")
    assert swift, "python-swiftclient installs the swift command"
    made = subprocess.run([swift, "tempurl", "GET", "120", _path(conn, container, "private"),
                           ACCOUNT_KEY], capture_output=True, text=True, check=True, timeout=60)
    assert _open(server, made.stdout.strip())[2] == b"private"


def test_keys_are_hidden_from_other_readers(server, conn, container) -> None:
    conn.post_container(container, {"X-Container-Meta-Temp-URL-Key": CONTAINER_KEY,
                                    "X-Container-Read": ".r:*,.rlistings"})
    status, headers, _ = _open(server, f"{urlsplit(conn.get_auth()[0]).path}/{container}")
    assert status in (200, 204)
    assert not any(k.lower().startswith("x-container-meta-temp-url") for k in headers)
    assert conn.head_container(container)["x-container-meta-temp-url-key"] == CONTAINER_KEY
    with pytest.raises(ClientException) as err:  # a TempURL query needs its signature
        swift_client.get_object(conn.get_auth()[0], "", container, "x",
                                query_string="temp_url_expires=9999999999")
    assert err.value.http_status == 401
