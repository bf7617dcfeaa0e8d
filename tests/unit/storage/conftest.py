"""Fixtures for the pod tests: a real pod app served as `kurastore pod` serves it (the lean
lane in front of the aiohttp app, on a loopback socket), and a real PodClient.

Helpers are handed out as fixtures (`start_pod`, `raw_request`, `secret`), since a test
module cannot import this conftest by name.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kurastore.storage import PodClient, PodConfig, ShardId
from kurastore.storage._listener import PodListener
from kurastore.storage.auth import sign_request
from kurastore.storage.server import build_pod_app

SECRET = b"unit-test-cluster-secret-0123456789"


class Listening:
    """What a test needs of the listening pod: its port, and a way to stop it."""

    def __init__(self, listener: PodListener) -> None:
        self.listener = listener
        self.port = listener.port

    async def close(self) -> None:
        await self.listener.stop()


@dataclass
class Pod:
    """A running pod: its URL, its app, its data directory and a client bound to it."""

    url: str
    app: web.Application
    data_dir: Path
    client: PodClient
    server: Listening


async def start_pod(data_dir: Path, client: PodClient, *, port: int = 0, **config: Any) -> Pod:
    app = build_pod_app(PodConfig(data_dir=data_dir, secret=SECRET, **config))
    listener = PodListener(app, "127.0.0.1", port)
    await listener.start()
    return Pod(f"http://127.0.0.1:{listener.port}", app, data_dir, client, Listening(listener))


@pytest.fixture
async def client() -> AsyncIterator[PodClient]:
    c = PodClient(SECRET, request_timeout_s=5.0)
    yield c
    await c.close()


@pytest.fixture
async def pod(tmp_path: Path, client: PodClient) -> AsyncIterator[Pod]:
    p = await start_pod(tmp_path / "pod", client)
    yield p
    await p.server.close()


@pytest.fixture(name="start_pod")
def start_pod_fixture() -> Any:
    return start_pod


@pytest.fixture(name="raw_request")
def raw_request_fixture() -> Any:
    return raw_request


@pytest.fixture
def secret() -> bytes:
    return SECRET


def shard(n: int = 0, tag: str = "p1", index: int = 0) -> ShardId:
    return ShardId(f"{n:032x}", tag, index)


async def raw_request(
    url: str, method: str, target: str, *, body: bytes = b"", auth: bool = True,
    secret: bytes = SECRET, now: float | None = None,
) -> tuple[int, bytes]:
    """Send `target` byte for byte (no client-side normalisation); return status and body."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}",
             "Connection: close"]
    if auth:
        lines.append(f"X-Kura-Auth: {sign_request(secret, method, target, now)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), rest
