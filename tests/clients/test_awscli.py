"""aws-cli (v1, from PyPI) against a real kurastore server: `aws s3` and `aws s3api`."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from support.cli_env import aws_env

pytestmark = pytest.mark.clients

AWS = shutil.which("aws")


def aws(server, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert AWS, "aws-cli is installed by the project's test dependencies"
    env = aws_env(server.data_dir.parent)
    return subprocess.run(
        [AWS, "--endpoint-url", server.endpoint, *args],
        capture_output=True, text=True, env=env, check=check, timeout=300,
    )


def test_version_is_reported(server) -> None:
    out = aws(server, "--version")
    print("client:", (out.stdout or out.stderr).strip())
    assert "aws-cli/1." in (out.stdout + out.stderr)


def test_mb_cp_ls_mv_rm_rb(server, workdir: Path) -> None:
    bucket = "s3://cli-basic"
    aws(server, "s3", "mb", bucket)
    small = workdir / "small.txt"
    small.write_text("hello from aws-cli\n")
    aws(server, "s3", "cp", str(small), f"{bucket}/dir/small.txt")
    listing = aws(server, "s3", "ls", f"{bucket}/dir/").stdout
    assert "small.txt" in listing
    aws(server, "s3", "mv", f"{bucket}/dir/small.txt", f"{bucket}/moved.txt")
    back = workdir / "back.txt"
    aws(server, "s3", "cp", f"{bucket}/moved.txt", str(back))
    assert back.read_text() == small.read_text()
    assert "small.txt" not in aws(server, "s3", "ls", "--recursive", bucket).stdout
    failed = aws(server, "s3", "rb", bucket, check=False)
    assert failed.returncode != 0 and "BucketNotEmpty" in failed.stderr
    aws(server, "s3", "rm", f"{bucket}/moved.txt")
    aws(server, "s3", "rb", bucket)
    assert "cli-basic" not in aws(server, "s3", "ls").stdout


def test_multipart_copy_200mib(server, workdir: Path) -> None:
    bucket = "s3://cli-big"
    aws(server, "s3", "mb", bucket)
    big = workdir / "big.bin"
    with open(big, "wb") as f:
        for _ in range(200):
            f.write(os.urandom(1 << 20))
    aws(server, "s3", "cp", str(big), f"{bucket}/big.bin")
    head = json.loads(aws(server, "s3api", "head-object", "--bucket", "cli-big",
                          "--key", "big.bin").stdout)
    assert head["ContentLength"] == 200 << 20 and "-" in head["ETag"]
    aws(server, "s3", "cp", f"{bucket}/big.bin", f"{bucket}/copy.bin")
    out = workdir / "out.bin"
    aws(server, "s3", "cp", f"{bucket}/copy.bin", str(out))
    assert _sha(out) == _sha(big)
    aws(server, "s3", "rb", "--force", bucket)


def test_sync_500_files_both_ways(server, workdir: Path) -> None:
    src = workdir / "src"
    for i in range(500):
        d = src / f"d{i % 10}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.txt").write_bytes(os.urandom(100 + i))
    aws(server, "s3", "mb", "s3://cli-sync")
    aws(server, "s3", "sync", str(src), "s3://cli-sync/tree")
    listed = aws(server, "s3", "ls", "--recursive", "s3://cli-sync/tree/").stdout.splitlines()
    assert len(listed) == 500
    # A second sync uploads nothing.
    again = aws(server, "s3", "sync", str(src), "s3://cli-sync/tree").stdout
    assert "upload:" not in again
    dst = workdir / "dst"
    aws(server, "s3", "sync", "s3://cli-sync/tree", str(dst))
    for path in src.rglob("*.txt"):
        assert (dst / path.relative_to(src)).read_bytes() == path.read_bytes()
    aws(server, "s3", "rm", "--recursive", "s3://cli-sync/tree/d3")
    remaining = aws(server, "s3", "ls", "--recursive", "s3://cli-sync/").stdout.splitlines()
    assert len(remaining) == 450
    aws(server, "s3", "rb", "--force", "s3://cli-sync")


def test_presign(server) -> None:
    import urllib.request

    aws(server, "s3", "mb", "s3://cli-presign")
    aws(server, "s3api", "put-object", "--bucket", "cli-presign", "--key", "k",
        "--body", "/etc/hostname")
    url = aws(server, "s3", "presign", "s3://cli-presign/k", "--expires-in", "120").stdout.strip()
    with urllib.request.urlopen(url) as resp:
        assert resp.read() == Path("/etc/hostname").read_bytes()
    aws(server, "s3", "rb", "--force", "s3://cli-presign")


def test_s3api_calls(server, workdir: Path) -> None:
    b = "cli-api"
    aws(server, "s3api", "create-bucket", "--bucket", b)
    aws(server, "s3api", "head-bucket", "--bucket", b)
    body = workdir / "b.txt"
    body.write_text("api body")
    put = json.loads(aws(server, "s3api", "put-object", "--bucket", b, "--key", "k",
                         "--body", str(body), "--metadata", "x=1",
                         "--content-type", "text/plain").stdout)
    assert put["ETag"] == f'"{hashlib.md5(b"api body").hexdigest()}"'
    aws(server, "s3api", "put-object-tagging", "--bucket", b, "--key", "k",
        "--tagging", "TagSet=[{Key=t,Value=v}]")
    tags = json.loads(aws(server, "s3api", "get-object-tagging", "--bucket", b,
                          "--key", "k").stdout)
    assert tags["TagSet"] == [{"Key": "t", "Value": "v"}]
    aws(server, "s3api", "copy-object", "--bucket", b, "--key", "k2",
        "--copy-source", f"{b}/k")
    listed = json.loads(aws(server, "s3api", "list-objects-v2", "--bucket", b).stdout)
    assert [o["Key"] for o in listed["Contents"]] == ["k", "k2"]
    out = workdir / "got.txt"
    aws(server, "s3api", "get-object", "--bucket", b, "--key", "k2", str(out))
    assert out.read_text() == "api body"
    aws(server, "s3api", "get-bucket-versioning", "--bucket", b)
    aws(server, "s3api", "get-bucket-acl", "--bucket", b)
    aws(server, "s3api", "delete-objects", "--bucket", b,
        "--delete", "Objects=[{Key=k},{Key=k2}]")
    aws(server, "s3api", "delete-bucket", "--bucket", b)
    missing = aws(server, "s3api", "head-bucket", "--bucket", b, check=False)
    assert missing.returncode != 0


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()
