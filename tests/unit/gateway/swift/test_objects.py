"""Swift verbs over HTTP against the in-process stack: containers, objects,
ranges, conditions, copies, large objects, expiry, and bad input that must
change nothing."""

from __future__ import annotations

import hashlib
import json
import os
import time

from support.fakes import body_of

from kurastore.gateway.maintenance.expire import expire_once
from kurastore.gateway.objects.api import PutOptions


async def put(stack, user, container, obj=None, data=b"", **headers):
    parts = [container] if obj is None else [container, obj]
    return await stack.client.put(stack.url(user, *parts), data=data,
                                  headers=stack.auth(user, **headers))


async def get(stack, user, *parts, **headers):
    return await stack.client.get(stack.url(user, *parts), headers=stack.auth(user, **headers))


async def test_container_lifecycle(stack):
    assert (await put(stack, "alice", "box", **{"X-Container-Meta-Color": "red"})).status == 201
    assert (await put(stack, "alice", "box")).status == 202
    head = await stack.client.head(stack.url("alice", "box"), headers=stack.auth("alice"))
    assert head.status == 204
    assert head.headers["X-Container-Meta-Color"] == "red"
    assert head.headers["X-Container-Object-Count"] == "0"
    post = await stack.client.post(stack.url("alice", "box"), headers=stack.auth(
        "alice", **{"X-Remove-Container-Meta-Color": "x", "X-Container-Read": ".r:*"}))
    assert post.status == 204
    head = await stack.client.head(stack.url("alice", "box"), headers=stack.auth("alice"))
    assert "X-Container-Meta-Color" not in head.headers
    assert head.headers["X-Container-Read"] == ".r:*"
    assert (await put(stack, "alice", "box", "o", b"data")).status == 201
    conflict = await stack.client.delete(stack.url("alice", "box"), headers=stack.auth("alice"))
    assert conflict.status == 409 and "Conflict" in await conflict.text()
    await stack.client.delete(stack.url("alice", "box", "o"), headers=stack.auth("alice"))
    gone = await stack.client.delete(stack.url("alice", "box"), headers=stack.auth("alice"))
    assert gone.status == 204
    assert (await get(stack, "alice", "box")).status == 404


async def test_another_accounts_container_is_forbidden(stack):
    await put(stack, "alice", "mine")
    # bob's own account, but the bucket name is alice's
    assert (await get(stack, "bob", "mine")).status == 403
    assert (await put(stack, "bob", "mine", "o", b"x")).status == 403
    assert (await put(stack, "bob", "mine")).status == 403


async def test_bad_names_and_metadata_change_nothing(stack):
    too_long = "c" * 257
    resp = await put(stack, "alice", too_long)
    assert resp.status == 400 and "Container name length of 257 longer than 256" in (
        await resp.text())
    resp = await stack.client.put(stack.url("alice") + "/a%2Fb", headers=stack.auth("alice"))
    assert resp.status == 400 and "slash" in await resp.text()
    await put(stack, "alice", "c")
    resp = await put(stack, "alice", "c", "o" * 1025, b"x")
    assert resp.status == 400 and "Object name length of 1025 longer than 1024" in (
        await resp.text())
    resp = await put(stack, "alice", "c", "o", b"x", **{"X-Object-Meta-" + "n" * 129: "v"})
    assert resp.status == 400 and "Metadata name too long" in await resp.text()
    resp = await put(stack, "alice", "c", "o", b"x", **{"X-Object-Meta-k": "v" * 257})
    assert resp.status == 400 and "Metadata value longer than 256" in await resp.text()
    many = {f"X-Object-Meta-k{i}": "v" for i in range(91)}
    assert (await put(stack, "alice", "c", "o", b"x", **many)).status == 400
    big = {f"X-Object-Meta-k{i}": "v" * 250 for i in range(17)}
    resp = await put(stack, "alice", "c", "o", b"x", **big)
    assert resp.status == 400 and "Total metadata too large" in await resp.text()
    listing = await get(stack, "alice")
    assert (await listing.text()).split() == ["c"]
    assert (await get(stack, "alice", "c")).status == 204  # still empty


async def test_put_get_metadata_and_etag_check(stack):
    await put(stack, "alice", "c")
    data = os.urandom(300_000)
    md5 = hashlib.md5(data).hexdigest()
    resp = await put(stack, "alice", "c", "f.txt", data, Etag=md5,
                     **{"X-Object-Meta-Color": "blue", "Content-Disposition": "inline"})
    assert resp.status == 201 and resp.headers["Etag"] == md5
    got = await get(stack, "alice", "c", "f.txt")
    assert await got.read() == data
    assert got.headers["Etag"] == md5
    assert got.headers["X-Object-Meta-Color"] == "blue"
    assert got.headers["Content-Type"] == "application/octet-stream"  # as aiohttp sent it
    assert got.headers["Content-Disposition"] == "inline"
    assert got.headers["X-Trans-Id"].startswith("tx")
    # S3 sees the same metadata under its own name
    version = await stack.service.head_object("c", "f.txt")
    assert version.user_meta == {"color": "blue"} and version.etag == md5
    guessed = await stack.client.put(stack.url("alice", "c", "g.html"), data=b"<p>",
                                     headers=stack.auth("alice"),
                                     skip_auto_headers=["Content-Type"])
    assert guessed.status == 201
    head = await stack.client.head(stack.url("alice", "c", "g.html"), headers=stack.auth("alice"))
    assert head.headers["Content-Type"] == "text/html"  # guessed from the name, as Swift does
    bad = await put(stack, "alice", "c", "f.txt", b"other", Etag="0" * 32)
    assert bad.status == 422
    assert await (await get(stack, "alice", "c", "f.txt")).read() == data


async def test_chunked_put(stack):
    await put(stack, "alice", "c")

    async def chunks():
        for _ in range(4):
            yield b"z" * 100_000

    resp = await stack.client.put(stack.url("alice", "c", "ch"), data=chunks(),
                                  headers=stack.auth("alice"))
    assert resp.status == 201
    got = await get(stack, "alice", "c", "ch")
    assert await got.read() == b"z" * 400_000


async def test_ranges_and_conditions(stack):
    await put(stack, "alice", "c")
    data = bytes(range(256)) * 40
    etag = (await put(stack, "alice", "c", "r", data)).headers["Etag"]
    one = await get(stack, "alice", "c", "r", Range="bytes=10-19")
    assert one.status == 206 and await one.read() == data[10:20]
    assert one.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    multi = await get(stack, "alice", "c", "r", Range="bytes=0-3,-4")
    assert multi.status == 206
    assert multi.headers["Content-Type"].startswith("multipart/byteranges;boundary=")
    body = await multi.read()
    assert data[:4] in body and data[-4:] in body and b"Content-Range: bytes 0-3/" in body
    assert (await get(stack, "alice", "c", "r", Range="bytes=99999-")).status == 416
    assert (await get(stack, "alice", "c", "r", **{"If-None-Match": etag})).status == 304
    assert (await get(stack, "alice", "c", "r", **{"If-Match": "nope"})).status == 412
    assert (await get(stack, "alice", "c", "r", **{"If-Match": f'"{etag}"'})).status == 200


async def test_post_replaces_metadata_and_copy(stack):
    await put(stack, "alice", "c")
    await put(stack, "alice", "c", "o", b"hello", **{"X-Object-Meta-A": "1"})
    resp = await stack.client.post(stack.url("alice", "c", "o"), headers=stack.auth(
        "alice", **{"X-Object-Meta-B": "2", "Content-Type": "text/x-test"}))
    assert resp.status == 202
    head = await stack.client.head(stack.url("alice", "c", "o"), headers=stack.auth("alice"))
    assert head.headers["X-Object-Meta-B"] == "2" and "X-Object-Meta-A" not in head.headers
    assert head.headers["Content-Type"] == "text/x-test"
    copy = await stack.client.request("COPY", stack.url("alice", "c", "o"), headers=stack.auth(
        "alice", Destination="c/o2", **{"X-Object-Meta-C": "3"}))
    assert copy.status == 201 and copy.headers["X-Copied-From"] == "c/o"
    got = await get(stack, "alice", "c", "o2")
    assert await got.read() == b"hello"
    assert got.headers["X-Object-Meta-B"] == "2" and got.headers["X-Object-Meta-C"] == "3"
    put_copy = await put(stack, "alice", "c", "o3", **{"X-Copy-From": "/c/o",
                                                        "X-Fresh-Metadata": "true"})
    assert put_copy.status == 201
    head = await stack.client.head(stack.url("alice", "c", "o3"), headers=stack.auth("alice"))
    assert "X-Object-Meta-B" not in head.headers
    assert (await put(stack, "alice", "c", "o4", **{"X-Copy-From": "/c/missing"})).status == 404


async def test_slo_put_get_and_delete(stack):
    await put(stack, "alice", "c")
    await put(stack, "alice", "segs")
    parts = [os.urandom(70_000 + i) for i in range(3)]
    manifest = []
    for i, part in enumerate(parts):
        etag = (await put(stack, "alice", "segs", f"p{i}", part)).headers["Etag"]
        manifest.append({"path": f"/segs/p{i}", "etag": etag, "size_bytes": len(part)})
    resp = await stack.client.put(stack.url("alice", "c", "big") + "?multipart-manifest=put",
                                  data=json.dumps(manifest), headers=stack.auth("alice"))
    assert resp.status == 201, await resp.text()
    expected = hashlib.md5("".join(m["etag"] for m in manifest).encode()).hexdigest()
    assert resp.headers["Etag"] == f'"{expected}"'
    got = await get(stack, "alice", "c", "big")
    assert await got.read() == b"".join(parts)
    assert got.headers["Etag"] == f'"{expected}"'
    assert got.headers["X-Static-Large-Object"] == "True"
    ranged = await get(stack, "alice", "c", "big", Range="bytes=69998-70003")
    assert await ranged.read() == b"".join(parts)[69998:70004]
    raw = await stack.client.get(stack.url("alice", "c", "big") + "?multipart-manifest=get",
                                 headers=stack.auth("alice"))
    assert [e["name"] for e in await raw.json(content_type=None)] == [
        "/segs/p0", "/segs/p1", "/segs/p2"]
    gone = await stack.client.delete(stack.url("alice", "c", "big") +
                                     "?multipart-manifest=delete", headers=stack.auth("alice"))
    assert gone.status == 200 and "Number Deleted: 4" in await gone.text()
    assert (await get(stack, "alice", "segs")).status == 204


async def test_slo_with_missing_or_wrong_segments_changes_nothing(stack):
    await put(stack, "alice", "c")
    etag = (await put(stack, "alice", "c", "seg", b"segment")).headers["Etag"]
    manifest = [{"path": "/c/seg", "etag": etag, "size_bytes": 7},
                {"path": "/c/nope", "etag": None, "size_bytes": None},
                {"path": "/c/seg", "etag": "0" * 32, "size_bytes": 7},
                {"path": "/c/seg", "etag": etag, "size_bytes": 8}]
    resp = await stack.client.put(stack.url("alice", "c", "m") + "?multipart-manifest=put",
                                  data=json.dumps(manifest), headers=stack.auth("alice"))
    assert resp.status == 400
    text = await resp.text()
    assert text.startswith("Errors:\n")
    assert "/c/nope, 404 Not Found" in text and "Etag Mismatch" in text
    assert "Size Mismatch" in text
    assert (await get(stack, "alice", "c", "m")).status == 404
    bad = await stack.client.put(stack.url("alice", "c", "m") + "?multipart-manifest=put",
                                 data="not json", headers=stack.auth("alice"))
    assert bad.status == 400 and "valid JSON" in await bad.text()


async def test_dlo(stack):
    await put(stack, "alice", "c")
    for i in range(3):
        await put(stack, "alice", "c", f"seg/{i:02d}", bytes([65 + i]) * 1000)
    resp = await put(stack, "alice", "c", "dlo", **{"X-Object-Manifest": "c/seg/"})
    assert resp.status == 201
    got = await get(stack, "alice", "c", "dlo")
    assert await got.read() == b"A" * 1000 + b"B" * 1000 + b"C" * 1000
    assert got.headers["X-Object-Manifest"] == "c/seg/"
    assert got.headers["Etag"].startswith('"')


async def test_expired_objects_404_then_the_worker_removes_them(stack):
    await put(stack, "alice", "c")
    resp = await put(stack, "alice", "c", "tmp", b"x", **{"X-Delete-After": "1"})
    assert resp.status == 201
    keep = await put(stack, "alice", "c", "keep", b"y", **{"X-Delete-At": str(
        int(time.time()) + 3600)})
    assert keep.status == 201
    head = await stack.client.head(stack.url("alice", "c", "keep"), headers=stack.auth("alice"))
    assert "X-Delete-At" in head.headers
    past = await put(stack, "alice", "c", "p", b"z", **{"X-Delete-At": "1000"})
    assert past.status == 400
    assert await expire_once(stack.service, now=time.time() + 2) == 1
    assert (await get(stack, "alice", "c", "tmp")).status == 404
    assert (await get(stack, "alice", "c", "keep")).status == 200
    # past its time but not yet removed: already gone for readers
    await stack.service.put_object("c", "stale", body_of(b"s"),
                                   PutOptions(expires_at=time.time() - 1))
    assert (await get(stack, "alice", "c", "stale")).status == 404
    assert (await stack.service.head_object("c", "stale")).size == 1
    assert await expire_once(stack.service) == 1
    listing = await get(stack, "alice", "c")
    assert (await listing.text()).split() == ["keep"]


async def test_account_metadata_and_listing(stack):
    post = await stack.client.post(stack.url("alice"), headers=stack.auth(
        "alice", **{"X-Account-Meta-Team": "blue"}))
    assert post.status == 204
    await put(stack, "alice", "one")
    await put(stack, "alice", "two")
    assert (await put(stack, "alice", "two", "o", b"12345")).status == 201
    resp = await stack.client.get(stack.url("alice") + "?format=json",
                                  headers=stack.auth("alice"))
    assert [(c["name"], c["count"], c["bytes"]) for c in await resp.json()] == [
        ("one", 0, 0), ("two", 1, 5)]
    assert resp.headers["X-Account-Meta-Team"] == "blue"
    assert resp.headers["X-Account-Object-Count"] == "1"
    assert resp.headers["X-Account-Bytes-Used"] == "5"
    other = await stack.client.get(stack.url("bob"), headers=stack.auth("bob"))
    assert other.status == 204 and "X-Account-Meta-Team" not in other.headers


async def test_info_and_healthcheck(stack):
    info = await stack.client.get("/info")
    caps = await info.json()
    assert "slo" in caps and caps["swift"]["container_listing_limit"] == 10000
    health = await stack.client.get("/healthcheck")
    assert await health.text() == "OK"
