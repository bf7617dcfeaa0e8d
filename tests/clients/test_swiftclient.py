"""python-swiftclient (its Python API and the `swift` command) against a real
`kurastore server`: objects, listings, metadata, copies, segmented uploads (SLO
and DLO), cross-protocol reads with boto3 both ways, and bad input that must
get Swift's error and change nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.cluster import ACCESS_KEY, SECRET_KEY
from support.swift import connect, remove_container
from swiftclient import client as swift_client
from swiftclient.exceptions import ClientException

from kurastore.gateway.swift.auth import TokenSigner

pytestmark = pytest.mark.clients

SWIFT = shutil.which("swift")
MiB = 1 << 20


@pytest.fixture(scope="module")
def conn(server) -> swift_client.Connection:
    return connect(server.endpoint, ACCESS_KEY, SECRET_KEY)


@pytest.fixture
def container(conn) -> Iterator[str]:
    name = f"sw-{uuid.uuid4().hex[:12]}"
    conn.put_container(name)
    yield name
    remove_container(conn, name)
    remove_container(conn, name + "_segments")


def swift_cli(server, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    assert SWIFT, "python-swiftclient installs the swift command"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(server.data_dir.parent),
        "ST_AUTH": f"{server.endpoint}/auth/v1.0",
        "ST_USER": ACCESS_KEY,
        "ST_KEY": SECRET_KEY,
    }
    out = subprocess.run([SWIFT, *args], capture_output=True, text=True, env=env, cwd=cwd,
                         timeout=300)
    assert out.returncode == 0, f"swift {' '.join(args)}:\n{out.stdout}\n{out.stderr}"
    return out


def md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MiB), b""):
            digest.update(block)
    return digest.hexdigest()


def test_api_round_trip_and_listing(conn, container) -> None:
    data = os.urandom(200_000)
    etag = conn.put_object(container, "dir/a.bin", data, headers={"X-Object-Meta-Color": "blue"},
                           content_type="application/x-test")
    assert etag == hashlib.md5(data).hexdigest()
    for name in ("dir/b.txt", "dir/sub/c.txt", "top.txt"):
        conn.put_object(container, name, name.encode())
    headers, body = conn.get_object(container, "dir/a.bin")
    assert body == data
    assert headers["etag"] == etag and headers["x-object-meta-color"] == "blue"
    assert headers["content-type"] == "application/x-test"
    assert headers["x-trans-id"].startswith("tx")
    _, listing = conn.get_container(container, prefix="dir/", delimiter="/")
    assert [e.get("name", e.get("subdir")) for e in listing] == [
        "dir/a.bin", "dir/b.txt", "dir/sub/"]
    assert listing[0]["bytes"] == 200_000 and listing[0]["hash"] == etag
    head = conn.head_container(container)
    assert head["x-container-object-count"] == "4"
    _, page = conn.get_container(container, limit=2, marker="dir/a.bin")
    assert [e["name"] for e in page] == ["dir/b.txt", "dir/sub/c.txt"]
    conn.post_object(container, "top.txt", headers={"X-Object-Meta-Size": "small"})
    assert conn.head_object(container, "top.txt")["x-object-meta-size"] == "small"
    conn.copy_object(container, "top.txt", f"/{container}/copy.txt")
    assert conn.get_object(container, "copy.txt")[1] == b"top.txt"
    conn.delete_object(container, "copy.txt")
    with pytest.raises(ClientException) as err:
        conn.head_object(container, "copy.txt")
    assert err.value.http_status == 404
    account = conn.head_account()
    assert int(account["x-account-container-count"]) >= 1


def test_cli_upload_list_download_stat_copy_delete(server, conn, container, tmp_path) -> None:
    src = tmp_path / "src"
    (src / "docs").mkdir(parents=True)
    files = {"docs/a.txt": b"alpha", "docs/b.txt": b"bravo", "c.txt": b"charlie"}
    for name, data in files.items():
        (src / name).write_bytes(data)
    swift_cli(server, "upload", container, "docs", "c.txt", "-m", "owner:kura", cwd=src)
    listed = swift_cli(server, "list", container).stdout.split()
    assert listed == ["c.txt", "docs/a.txt", "docs/b.txt"]
    assert swift_cli(server, "list", container, "--prefix", "docs/").stdout.split() == [
        "docs/a.txt", "docs/b.txt"]
    assert swift_cli(server, "list", container, "--delimiter", "/").stdout.split() == [
        "c.txt", "docs/"]
    stat = swift_cli(server, "stat", container, "docs/a.txt").stdout
    assert "Meta Owner: kura" in stat and hashlib.md5(b"alpha").hexdigest() in stat
    out = tmp_path / "out"
    swift_cli(server, "download", container, "--output-dir", str(out))
    for name, data in files.items():
        assert (out / name).read_bytes() == data
    swift_cli(server, "copy", container, "c.txt", "--destination", f"/{container}/d.txt")
    swift_cli(server, "post", container, "d.txt", "-m", "tag:copied")
    assert conn.head_object(container, "d.txt")["x-object-meta-tag"] == "copied"
    swift_cli(server, "delete", container, "docs/a.txt", "d.txt")
    assert swift_cli(server, "list", container).stdout.split() == ["c.txt", "docs/b.txt"]
    assert container in swift_cli(server, "list").stdout.split()


@pytest.fixture(scope="module")
def big_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("big") / "big.bin"
    with open(path, "wb") as f:
        for _ in range(50):
            f.write(os.urandom(MiB))
    return path


@pytest.mark.parametrize("mode", ["--use-slo", "--use-dlo"])
def test_segmented_upload_50_mib(server, conn, container, big_file, tmp_path, mode) -> None:
    swift_cli(server, "upload", container, str(big_file), "--object-name", "big",
              "--segment-size", str(10 * MiB), mode)
    head = conn.head_object(container, "big")
    assert int(head["content-length"]) == 50 * MiB
    assert ("x-static-large-object" in head) == (mode == "--use-slo")
    assert ("x-object-manifest" in head) == (mode == "--use-dlo")
    _, segments = conn.get_container(container + "_segments")
    assert len(segments) == 5 and all(s["bytes"] == 10 * MiB for s in segments)
    expected = hashlib.md5("".join(s["hash"] for s in segments).encode()).hexdigest()
    assert head["etag"] == f'"{expected}"'
    out = tmp_path / "big.out"
    swift_cli(server, "download", container, "big", "-o", str(out))
    assert md5_of(out) == md5_of(big_file)
    _, part = conn.get_object(container, "big", headers={"Range": "bytes=10485750-10485770"})
    with open(big_file, "rb") as f:
        f.seek(10485750)
        assert part == f.read(21)
    swift_cli(server, "delete", container, "big")
    assert conn.get_container(container + "_segments")[1] == []


def test_s3_put_swift_get(conn, s3, container) -> None:
    data = os.urandom(150_000)
    put = s3.put_object(Bucket=container, Key="from-s3", Body=data, Metadata={"origin": "s3"},
                        ContentType="text/x-s3")
    headers, body = conn.get_object(container, "from-s3")
    assert body == data
    assert headers["etag"] == put["ETag"].strip('"')
    assert headers["x-object-meta-origin"] == "s3"
    assert headers["content-type"] == "text/x-s3"


def test_swift_put_s3_get(conn, s3, container) -> None:
    data = os.urandom(150_000)
    etag = conn.put_object(container, "from-swift", data,
                           headers={"X-Object-Meta-Origin": "swift"})
    got = s3.get_object(Bucket=container, Key="from-swift")
    assert got["Body"].read() == data
    assert got["ETag"] == f'"{etag}"'
    assert got["Metadata"] == {"origin": "swift"}
    listed = s3.list_objects_v2(Bucket=container)["Contents"]
    assert [(o["Key"], o["ETag"]) for o in listed] == [("from-swift", f'"{etag}"')]


def _cluster_secret(server) -> bytes:
    state = json.loads((server.data_dir / "kurastore.json").read_text())
    return state["cluster_secret"].encode()


def test_bad_and_expired_tokens(server, conn, container) -> None:
    url, token = conn.get_auth()
    user_id = url.rsplit("/AUTH_", 1)[1]
    expired = TokenSigner(_cluster_secret(server)).issue(user_id, expires_at=time.time() - 1)
    assert TokenSigner(_cluster_secret(server)).verify(token)[0] == user_id
    for bad in ("AUTH_tkforged", expired, token[:-4] + "AAAA"):
        with pytest.raises(ClientException) as err:
            swift_client.put_object(url, bad, container, "sneaky", b"x")
        assert err.value.http_status == 401
        assert "Unauthorized" in err.value.http_response_content.decode()
    with pytest.raises(ClientException) as err:
        swift_client.Connection(authurl=f"{server.endpoint}/auth/v1.0", user=ACCESS_KEY,
                                key="wrong", retries=0).head_account()
    assert err.value.http_status == 401
    assert conn.get_container(container)[1] == []


def test_bad_input_changes_nothing(conn, container) -> None:
    before = [c["name"] for c in conn.get_account(full_listing=True)[1]]
    cases = [
        # swiftclient does not encode the slash: this is an object PUT into the
        # container "has", which does not exist (as with Swift). An encoded slash
        # ("has%2Fslash") is refused with 400 (tests/unit/gateway/swift).
        (lambda: conn.put_container("has/slash"), 404, None),
        (lambda: conn.put_container("c" * 257), 400, "longer than 256"),
        (lambda: conn.put_object(container, "o" * 1025, b"x"), 400, "longer than 1024"),
        (lambda: conn.put_object(container, "m", b"x",
                                 headers={"X-Object-Meta-" + "n" * 129: "v"}), 400,
         "Metadata name too long"),
        (lambda: conn.put_object(container, "m", b"x", headers={"X-Object-Meta-k": "v" * 257}),
         400, "Metadata value longer than 256"),
        (lambda: conn.post_container(container, {"X-Container-Meta-k": "v" * 257}), 400, None),
        (lambda: conn.put_object(container, "m", b"x", etag="0" * 32), 422, None),
        (lambda: conn.put_object(container, "slo", json.dumps(
            [{"path": f"/{container}/missing", "etag": None, "size_bytes": None}]),
            query_string="multipart-manifest=put"), 400, "404 Not Found"),
    ]
    for call, status, text in cases:
        with pytest.raises(ClientException) as err:
            call()
        assert err.value.http_status == status
        if text:
            assert text in err.value.http_response_content.decode()
    assert [c["name"] for c in conn.get_account(full_listing=True)[1]] == before
    assert conn.get_container(container)[1] == []
    assert not any(k.startswith("x-container-meta-") for k in conn.head_container(container))
