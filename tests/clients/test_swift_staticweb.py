"""Swift static web against a real `kurastore server`: a site set up with
python-swiftclient (ACLs and X-Container-Meta-Web-* metadata, as `swift post`
sets them), then browsed with plain http.client and urllib, as a browser does:
index pages, slash redirects, HTML listings, error pages, X-Web-Mode and
prefix TempURLs."""

from __future__ import annotations

import http.client
import urllib.request
import uuid
from collections.abc import Iterator
from html.parser import HTMLParser
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
from support.cluster import ACCESS_KEY, SECRET_KEY
from support.swift import connect, remove_container
from swiftclient import client as swift_client
from swiftclient.utils import generate_temp_url

pytestmark = pytest.mark.clients

PUBLIC = ".r:*,.rlistings"


@pytest.fixture(scope="module")
def conn(server) -> swift_client.Connection:
    return connect(server.endpoint, ACCESS_KEY, SECRET_KEY)


@pytest.fixture
def site(conn) -> Iterator[str]:
    """A container holding a small web site."""
    name = f"sw-{uuid.uuid4().hex[:12]}"
    conn.put_container(name)
    pages = {"index.html": b"<h1>home</h1>", "docs/index.html": b"<h1>docs</h1>",
             "docs/guide.txt": b"read me", "pics/cat one.png": b"\x89PNG cat",
             "pics/old/dog.png": b"\x89PNG dog", "style.css": b"body {}",
             "404error.html": b"<p>no such page</p>", "401error.html": b"<p>members only</p>"}
    for obj, body in pages.items():
        conn.put_object(name, obj, body)
    conn.put_object(name, "pics", b"", content_type="application/directory")  # a marker
    yield name
    remove_container(conn, name)


def _path(conn: swift_client.Connection, container: str, obj: str | None = None) -> str:
    """The container's path (no slash), or an object's ("" for the site's root)."""
    path = f"{urlsplit(conn.get_auth()[0]).path}/{container}"
    return path if obj is None else f"{path}/{obj}"


def _browse(server, path: str, method: str = "GET", headers: dict[str, str] | None = None
            ) -> tuple[int, dict[str, str], bytes]:
    """One request, redirects not followed (a browser shows where they point)."""
    parts = urlsplit(server.endpoint)
    client = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        client.request(method, path, headers=headers or {})
        resp = client.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        client.close()


class _Links(HTMLParser):
    """The title, stylesheet and links of a page, as a browser reads them."""

    def __init__(self) -> None:
        super().__init__()
        self.links: dict[str, str] = {}  # text -> href
        self.css: list[str] = []
        self.title = ""
        self._href: str | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "a":
            self._href = found.get("href") or ""
        elif tag == "link" and found.get("rel") == "stylesheet":
            self.css.append(found.get("href") or "")
        self._in_title = tag == "title"

    def handle_endtag(self, tag: str) -> None:
        self._href, self._in_title = (None if tag == "a" else self._href), False

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self.links[data] = self._href
        elif self._in_title:
            self.title += data


def _page(body: bytes) -> _Links:
    parser = _Links()
    parser.feed(body.decode())
    return parser


def test_info_announces_static_web(conn) -> None:
    assert "staticweb" in conn.get_capabilities()


def test_index_pages_and_slash_redirects(server, conn, site) -> None:
    conn.post_container(site, {"X-Container-Read": PUBLIC,
                               "X-Container-Meta-Web-Index": "index.html"})
    status, headers, body = _browse(server, _path(conn, site))
    assert status == 301
    assert headers["Location"] == f"{server.endpoint}{_path(conn, site, '')}"
    assert _browse(server, _path(conn, site, ""))[2] == b"<h1>home</h1>"

    status, headers, _ = _browse(server, _path(conn, site, "docs"))
    assert (status, headers["Location"]) == (301, f"{server.endpoint}{_path(conn, site, 'docs/')}")
    status, headers, body = _browse(server, _path(conn, site, "docs/"))
    assert (status, body) == (200, b"<h1>docs</h1>")
    assert _browse(server, _path(conn, site, "docs/"), "HEAD")[1]["Content-Length"] == "13"
    # a browser following the redirect lands on the page
    with urllib.request.urlopen(server.endpoint + _path(conn, site, "docs"), timeout=30) as resp:
        assert resp.read() == b"<h1>docs</h1>"
    # plain objects are served as they are
    assert _browse(server, _path(conn, site, "docs/guide.txt"))[2] == b"read me"


def test_html_listings_with_a_stylesheet(server, conn, site) -> None:
    conn.post_container(site, {"X-Container-Read": PUBLIC, "X-Container-Meta-Web-Listings": "true",
                               "X-Container-Meta-Web-Listings-CSS": "style.css"})
    status, headers, body = _browse(server, _path(conn, site, "pics/"))
    assert status == 200 and headers["Content-Type"] == "text/html; charset=UTF-8"
    page = _page(body)
    assert page.title == f"Listing of {_path(conn, site, 'pics/')}"
    assert page.css == ["../style.css"]
    assert page.links == {"../": "../", "old/": "./old/", "cat one.png": "./cat%20one%2Epng"}
    # the links work from the listing's own address
    base = server.endpoint + _path(conn, site, "pics/")
    with urllib.request.urlopen(urljoin(base, page.links["cat one.png"]), timeout=30) as resp:
        assert resp.read() == b"\x89PNG cat"
    assert _page(_browse(server, urljoin(_path(conn, site, "pics/"), "./old/"))[2]).links[
        "dog.png"] == "./dog%2Epng"

    top = _page(_browse(server, _path(conn, site, ""))[2])
    assert "../" not in top.links and top.css == ["style.css"]
    assert {"docs/", "pics/", "index.html"} <= set(top.links)
    # the marker object "pics" is a directory: its name redirects to the listing
    status, headers, _ = _browse(server, _path(conn, site, "pics"))
    assert (status, headers["Location"]) == (301, f"{server.endpoint}{_path(conn, site, 'pics/')}")
    # a path with nothing under it is not found
    assert _browse(server, _path(conn, site, "nothing/"))[0] == 404


def test_listings_label_and_directory_type(server, conn, site) -> None:
    conn.put_object(site, "notes", b"", content_type="text/directory")
    conn.put_object(site, "notes/monday.txt", b"meeting")
    conn.post_container(site, {"X-Container-Read": PUBLIC, "X-Container-Meta-Web-Listings": "on",
                               "X-Container-Meta-Web-Listings-Label": "example.com",
                               "X-Container-Meta-Web-Directory-Type": "text/directory"})
    page = _page(_browse(server, _path(conn, site, "notes/"))[2])
    assert page.title == "Listing of example.com/notes/"
    assert page.links["monday.txt"] == "./monday%2Etxt"
    assert _browse(server, _path(conn, site, "notes"))[0] == 301
    # "pics" (application/directory) is an ordinary empty object for this site
    assert _browse(server, _path(conn, site, "pics"))[0] == 200


def test_error_pages(server, conn, site) -> None:
    conn.post_container(site, {"X-Container-Read": ".r:*", "X-Container-Meta-Web-Listings": "true",
                               "X-Container-Meta-Web-Error": "error.html"})
    status, _, body = _browse(server, _path(conn, site, "docs/missing.html"))
    assert (status, body) == (404, b"<p>no such page</p>")
    # listings need .rlistings: without it an anonymous visitor gets the 401 page
    status, _, body = _browse(server, _path(conn, site, ""))
    assert (status, body) == (401, b"<p>members only</p>")
    # objects themselves stay readable
    assert _browse(server, _path(conn, site, "docs/guide.txt"))[2] == b"read me"
    conn.post_container(site, {"X-Container-Meta-Web-Listings": "false",
                               "X-Container-Read": PUBLIC})
    status, _, body = _browse(server, _path(conn, site, "pics/"))
    assert (status, body) == (404, b"<p>no such page</p>")  # listings off: not found
    conn.post_container(site, {"X-Remove-Container-Meta-Web-Error": "x"})
    status, _, body = _browse(server, _path(conn, site, "pics/"))
    assert status == 404 and b"Web Listing Disabled" in body


def test_web_mode_with_a_token(server, conn, site) -> None:
    conn.post_container(site, {"X-Container-Meta-Web-Listings": "true"})  # private container
    token = {"X-Auth-Token": conn.get_auth()[1]}
    status, _, body = _browse(server, _path(conn, site, "docs/"), headers={
        **token, "X-Web-Mode": "true"})
    assert status == 200 and _page(body).links["guide.txt"] == "./guide%2Etxt"
    # without X-Web-Mode the owner gets the API's answers
    assert _browse(server, _path(conn, site, "docs/"), headers=token)[0] == 404
    assert b"index.html\n" in _browse(server, _path(conn, site), headers=token)[2]
    # and the site stays closed to anonymous visitors
    assert _browse(server, _path(conn, site, "docs/"))[0] == 401
    # without web settings X-Web-Mode finds no site at the root
    conn.post_container(site, {"X-Remove-Container-Meta-Web-Listings": "x"})
    assert _browse(server, _path(conn, site, ""), headers={**token, "X-Web-Mode": "true"})[
        0] == 404


def test_prefix_tempurl_browses_a_private_site(server, conn, site) -> None:
    key = "site-key-" + uuid.uuid4().hex
    conn.post_container(site, {"X-Container-Meta-Temp-URL-Key": key,
                               "X-Container-Meta-Web-Listings": "true"})
    url = generate_temp_url(_path(conn, site, ""), 60, key, "GET", prefix=True)
    query = url.split("?", 1)[1]
    status, headers, body = _browse(server, f"{_path(conn, site, '')}?{query}")
    assert status == 200 and headers["Content-Disposition"] == "inline"
    links = _page(body).links
    signed = parse_qs(query, keep_blank_values=True)
    for name in ("pics/", "docs/", "index.html"):
        target, _, link_query = links[name].partition("?")
        assert target == "./" + name.replace(".", "%2E")
        assert parse_qs(link_query, keep_blank_values=True) == signed  # the same signature
    # following the links, a browser walks the site and reads its files
    pics = _browse(server, urljoin(_path(conn, site, ""), links["pics/"]))
    assert pics[0] == 200
    cat = _page(pics[2]).links["cat one.png"]
    assert _browse(server, urljoin(_path(conn, site, "pics/"), cat))[2] == b"\x89PNG cat"
    # the root without its slash redirects; the signature is not carried over
    status, headers, _ = _browse(server, f"{_path(conn, site)}?{query}")
    assert status == 301 and "temp_url" not in headers["Location"]
    # only listings are served at the container root: no plain listing, no index
    conn.post_container(site, {"X-Remove-Container-Meta-Web-Listings": "x"})
    status, _, body = _browse(server, f"{_path(conn, site, '')}?{query}")
    assert status == 401 and b"Temp URL invalid" in body
    conn.post_container(site, {"X-Container-Meta-Web-Index": "index.html"})
    assert _browse(server, f"{_path(conn, site, '')}?{query}")[0] == 401
    # an unsigned visitor sees nothing
    assert _browse(server, _path(conn, site, ""))[0] == 401
