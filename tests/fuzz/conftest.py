"""The fuzz tier's target: one real `kurastore server` (3 pods, 2+1) for the whole
tier, with a bucket, two objects and a Swift token (values in fuzz/target.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fuzz.target import BUCKET, LARGE, LARGE_BODY, OBJECT, OBJECT_BODY, Target
from fuzz.wire import Signer, send
from support.cluster import ACCESS_KEY, SECRET_KEY, ServerProcess


@pytest.fixture(scope="session")
def target(tmp_path_factory) -> Iterator[Target]:
    server = ServerProcess(tmp_path_factory.mktemp("fuzz") / "data", pods=3)
    server.start()
    try:
        signer = Signer(server.port, ACCESS_KEY, SECRET_KEY)
        for method, path, body in (("PUT", f"/{BUCKET}", b""),
                                   ("PUT", f"/{BUCKET}/{OBJECT}", OBJECT_BODY),
                                   ("PUT", f"/{BUCKET}/{LARGE}", LARGE_BODY)):
            answer = send(server.port, method, path,
                          list(signer.headers(method, path).items()), body)
            assert answer.status == 200, answer
        auth = send(server.port, "GET", "/auth/v1.0",
                    [("X-Auth-User", ACCESS_KEY), ("X-Auth-Key", SECRET_KEY)])
        assert auth.status == 200, auth
        account = "/" + auth.headers["x-storage-url"].split("/", 3)[3]
        yield Target(server, signer, auth.headers["x-auth-token"], account)
    finally:
        server.stop()
