"""The AWS SDK for JavaScript v3 (npm) against a real kurastore server.

tests/clients/js/ pins @aws-sdk/client-s3 and @aws-sdk/lib-storage exactly
(package.json + package-lock.json). The first run installs them with `npm ci` into
${KURASTORE_CACHE:-~/.cache/kurastore}/npm-<hash of both files>, outside the
repository, so later runs and other checkouts reuse it; node finds them by NODE_PATH.
s3_client.cjs does the user's calls and prints JSON; this test checks it and
cross-checks the objects with boto3.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import zlib
from pathlib import Path

import pytest
from support.cluster import ACCESS_KEY, REGION, SECRET_KEY

pytestmark = pytest.mark.clients

JS_DIR = Path(__file__).resolve().parent / "js"
# Read at import: the autouse fixture in tests/conftest.py clears KURASTORE_* later.
CACHE = Path(os.environ.get("KURASTORE_CACHE") or Path.home() / ".cache" / "kurastore")
PINNED = json.loads((JS_DIR / "package.json").read_text())["dependencies"]
MiB = 1 << 20


@pytest.fixture(scope="session")
def node_modules() -> Path:
    """The pinned SDK installed once per package.json/package-lock.json content."""
    npm = shutil.which("npm")
    assert npm and shutil.which("node"), "node and npm are required for the JS SDK test"
    manifests = ("package.json", "package-lock.json")
    digest = hashlib.sha256(b"".join((JS_DIR / m).read_bytes() for m in manifests))
    target = CACHE / f"npm-{digest.hexdigest()[:12]}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one installer; concurrent runs wait for it
        if not (target / ".complete").exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            for m in manifests:
                shutil.copyfile(JS_DIR / m, target / m)
            subprocess.run([npm, "ci", "--prefix", str(target), "--no-audit", "--no-fund"],
                           check=True, capture_output=True, timeout=600)
            (target / ".complete").touch()
    return target / "node_modules"


def run_node(node_modules: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),  # no ~/.aws of the host
        "NODE_PATH": str(node_modules),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
    }
    return subprocess.run(["node", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def test_put_get_list_and_multipart_upload(server, s3, bucket: str, node_modules: Path,
                                           workdir: Path) -> None:
    big = workdir / "big.bin"
    big.write_bytes(os.urandom(30 * MiB))
    proc = run_node(node_modules, workdir, str(JS_DIR / "s3_client.cjs"), server.endpoint,
                    bucket, str(big))
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    node = run_node(node_modules, workdir, "--version").stdout.strip()
    print("client: @aws-sdk/client-s3", out["version"], "@aws-sdk/lib-storage",
          out["libStorageVersion"], "node", node)
    assert out["version"] == PINNED["@aws-sdk/client-s3"]
    assert out["libStorageVersion"] == PINNED["@aws-sdk/lib-storage"]

    hello = b"hello from the AWS SDK for JavaScript v3\n"
    md5 = f'"{hashlib.md5(hello).hexdigest()}"'
    assert out["put"]["etag"] == md5
    assert out["get"] == {"body": hello.decode(), "etag": md5, "contentType": "text/plain",
                          "metadata": {"origin": "node"}, "contentLength": len(hello)}
    assert out["range"] == {"body": "from", "contentRange": f"bytes 6-9/{len(hello)}"}
    # The SDK sends a CRC32 by default; it is stored and returned as a whole-object one.
    assert out["checksum"] == {"crc32": crc32_b64(hello), "type": "FULL_OBJECT"}

    pages = out["listPages"]
    assert [len(p) for p in pages] == [3, 3, 1]
    flat = [o for page in pages for o in page]
    assert [o["key"] for o in flat] == [f"js/many/k{i}" for i in range(7)]
    for i, o in enumerate(flat):
        assert o["size"] == i + 1
        assert o["etag"] == f'"{hashlib.md5(bytes([i]) * (i + 1)).hexdigest()}"'
    assert out["delimited"] == {"keys": ["js/copy.txt", "js/hello.txt"],
                                "prefixes": ["js/many/"]}
    assert out["copy"]["etag"] == md5
    assert out["deleted"] == ["js/many/k0", "js/many/k1"] and out["deleteErrors"] == []
    remaining = s3.list_objects_v2(Bucket=bucket, Prefix="js/many/")["Contents"]
    assert [o["Key"] for o in remaining] == [f"js/many/k{i}" for i in range(2, 7)]

    upload = out["upload"]
    assert upload["parts"] == 6  # 30 MiB in 5 MiB parts
    assert upload["etag"].endswith('-6"') and upload["headEtag"] == upload["etag"]
    assert upload["headLength"] == 30 * MiB
    assert upload["sha256"] == hashlib.sha256(big.read_bytes()).hexdigest()
    head = s3.head_object(Bucket=bucket, Key="js/big.bin", ChecksumMode="ENABLED")
    assert head["ETag"] == upload["etag"] and head["ContentLength"] == 30 * MiB
    assert s3.get_object(Bucket=bucket, Key="js/big.bin")["Body"].read() == big.read_bytes()
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
