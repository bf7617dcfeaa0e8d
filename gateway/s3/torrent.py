"""GetObjectTorrent (GET /bucket/key?torrent): a .torrent file (BEP 3) describing the
object, with the object's own URL as its web seed (BEP 19), so a BitTorrent client
downloads it from the gateway and shares it with its peers.

Rules:
- The pieces are SHA-1 digests of the object's bytes, read through the normal GET path
  (degraded reads, SSE and SSE-C keys included), hashed off the event loop.
- As on AWS: objects of 5 GB and more get no torrent, and reading a torrent needs the
  same access as reading the object (s3:GetObjectTorrent, the READ grant).
- There is no tracker: the web seed is the source, and clients find peers with DHT.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from urllib.parse import quote

from aiohttp import web

from kurastore.gateway.s3 import access, sse
from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3.context import S3Request

MAX_TORRENT_OBJECT = 5 * 10**9  # AWS: "objects that are less than 5 GB in size"
MIN_PIECE = 256 * 1024
MAX_PIECES = 2048  # pieces grow (powers of two) past this, as BitTorrent tools choose

Bencodable = int | bytes | str | list["Bencodable"] | dict[bytes, "Bencodable"]


def bencode(value: Bencodable) -> bytes:
    """BitTorrent's encoding: integers, byte strings, lists, dicts with sorted keys."""
    if isinstance(value, bool):
        raise TypeError("bencode has no booleans")
    if isinstance(value, int):
        return b"i%de" % value
    if isinstance(value, str):
        value = value.encode("utf-8")
    if isinstance(value, bytes):
        return b"%d:%s" % (len(value), value)
    if isinstance(value, list):
        return b"l" + b"".join(bencode(v) for v in value) + b"e"
    if isinstance(value, dict):
        return b"d" + b"".join(bencode(k) + bencode(value[k]) for k in sorted(value)) + b"e"
    raise TypeError(f"cannot bencode {type(value).__name__}")


def piece_length(size: int) -> int:
    length = MIN_PIECE
    while size > length * MAX_PIECES:
        length *= 2
    return length


class PieceHasher:
    """SHA-1 of each `length`-byte piece of a byte stream fed in chunks of any size."""

    def __init__(self, length: int) -> None:
        self.length = length
        self._digests: list[bytes] = []
        self._current = hashlib.sha1(usedforsecurity=False)
        self._filled = 0

    def feed(self, chunk: bytes | memoryview) -> None:
        view = memoryview(chunk).cast("B")
        while view.nbytes:
            take = min(self.length - self._filled, view.nbytes)
            self._current.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == self.length:
                self._digests.append(self._current.digest())
                self._current = hashlib.sha1(usedforsecurity=False)
                self._filled = 0

    def pieces(self) -> bytes:
        last = [self._current.digest()] if self._filled else []
        return b"".join(self._digests + last)


def torrent_name(bucket: str, key: str) -> str:
    """The file's name in the torrent: the key's last segment (no '/' is allowed)."""
    return key.rstrip("/").rsplit("/", 1)[-1] or bucket


async def get_object_torrent(s3: S3Request) -> web.StreamResponse:
    reader = await s3.service.open_object(
        s3.bucket, s3.key, version_id=s3.query.get("versionId") or None,
        customer_key=sse.read_key(s3.headers),
    )  # fmt: skip
    try:
        access.check_loaded(s3, reader.version)
        size = reader.version.size
        if size >= MAX_TORRENT_OBJECT:
            raise s3e.InvalidRequest("Torrents are only available for objects smaller than 5 GB")
        hasher = PieceHasher(piece_length(size))
        async for chunk in reader:
            await asyncio.to_thread(hasher.feed, chunk)  # hashlib releases the GIL
    finally:
        await reader.aclose()
    name = torrent_name(s3.bucket, s3.key)
    url = str(s3.request.url.with_query(None))
    torrent = bencode({
        b"created by": b"kurastore",
        b"creation date": int(time.time()),
        b"url-list": [url],
        b"info": {b"name": name, b"length": size, b"piece length": hasher.length,
                  b"pieces": hasher.pieces()},
    })  # fmt: skip
    return web.Response(body=torrent, headers={
        "Content-Type": "application/x-bittorrent",
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name + '.torrent')}",
    })
