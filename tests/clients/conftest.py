"""One real `kurastore server` (6 pods, 4+2) shared by the client tests, and
clients configured for it the way a user would configure them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cluster import ServerProcess, create_user
from support.s3client import make_client


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("kurastore") / "data")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="session")
def s3(server: ServerProcess):
    return make_client(server.endpoint)


@pytest.fixture
def bucket(s3) -> Iterator[str]:
    name = f"test-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    yield name
    # Leave nothing behind: every version and upload, then the bucket.
    for upload in s3.list_multipart_uploads(Bucket=name).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    paginator = s3.get_paginator("list_object_versions")
    for page in paginator.paginate(Bucket=name):
        items = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
        ]
        for start in range(0, len(items), 1000):
            s3.delete_objects(Bucket=name, Delete={"Objects": items[start:start + 1000],
                                                   "Quiet": True})
    s3.delete_bucket(Bucket=name)


@pytest.fixture(scope="module")
def other(server: ServerProcess) -> dict:
    """A second user (its id, name and a client), created with `kurastore admin`."""
    created = create_user(server, f"other-{uuid.uuid4().hex[:8]}")
    client = make_client(server.endpoint, created["access_key"], created["secret_key"])
    return {"id": created["user_id"], "name": created["user"], "client": client}


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path
