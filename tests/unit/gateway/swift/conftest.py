"""The Swift front end in process: SQLite metadata in tmp_path, six in-memory pods
with a 4+2 placement map, the ObjectService, and an aiohttp app with the
gateway's own middlewares and error renderers, routing Swift and S3 on one
port exactly as gateway/app.py does. Two users, alice and bob."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from support.s3_stack import memory_service

from kurastore.gateway import middlewares
from kurastore.gateway.keys import ERROR_RENDERERS, METRICS
from kurastore.gateway.metrics import GatewayMetrics
from kurastore.gateway.objects.service import ObjectService
from kurastore.gateway.s3.frontend import S3Frontend, render_s3_error
from kurastore.gateway.swift.auth import TokenSigner
from kurastore.gateway.swift.frontend import SwiftFrontend, render_swift_error, wants_swift

MiB = 1 << 20
ALICE = ("AKALICE0000000000001", "alice-secret-alice-secret-alice-secret00")
BOB = ("AKBOB000000000000002", "bob-secret-bob-secret-bob-secret-bob-0000")
CLUSTER_SECRET = b"cluster-secret-for-swift-tests!!"


@dataclass
class SwiftStack:
    client: TestClient
    service: ObjectService
    signer: TokenSigner
    users: dict[str, str]  # name -> user id
    keys: dict[str, tuple[str, str]]  # name -> (access key, secret)

    def url(self, user: str, *parts: str) -> str:
        return "/".join([f"/v1/AUTH_{self.users[user]}", *parts])

    def token(self, user: str) -> str:
        return self.signer.issue(self.users[user])

    def auth(self, user: str, **extra: str) -> dict[str, str]:
        return {"X-Auth-Token": self.token(user), **extra}


@pytest.fixture
async def stack(tmp_path) -> AsyncIterator[SwiftStack]:
    store, pods, service, users = await memory_service(tmp_path, {"alice": ALICE, "bob": BOB})
    signer = TokenSigner(CLUSTER_SECRET, 3600.0)
    swift = SwiftFrontend(service, signer)
    s3 = S3Frontend(service)

    async def dispatch(request: web.Request) -> web.StreamResponse:
        if wants_swift(request):
            return await swift.handle(request)
        return await s3.handle(request)

    app = web.Application(middlewares=[middlewares.access_log_middleware,
                                       middlewares.error_middleware])
    app[METRICS] = GatewayMetrics()
    app[ERROR_RENDERERS] = {"s3": render_s3_error, "swift": render_swift_error}
    app.on_response_prepare.append(middlewares.stamp_response)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield SwiftStack(client, service, signer, users, {"alice": ALICE, "bob": BOB})
    finally:
        await client.close()
        await service.close()
        await pods.close()
        await store.close()
