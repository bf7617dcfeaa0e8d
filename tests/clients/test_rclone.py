"""rclone (Debian's package) against a real kurastore server.

rclone is configured the way a user scripts it: purely by RCLONE_CONFIG_* variables
(provider Other, path style, us-east-1, no ACL option, so rclone sends the private
canned ACL), with a clean environment so nothing on the host (AWS_* variables, a
user's rclone.conf) leaks in. rclone checks single-part
objects against the ETag (it must be the MD5 of the bytes) and multipart ones against
the MD5 it stores in X-Amz-Meta-Md5chksum, so `check` and `lsjson --hash` prove both.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from support.cli_env import rclone_env

pytestmark = pytest.mark.clients

RCLONE = shutil.which("rclone")
TESTED_MAJOR_MINOR = (1, 60)  # Debian bookworm's rclone; newer 1.x must still pass
MiB = 1 << 20


def rclone(server, home: Path, *args: str, check: bool = True, binary: bool = False,
           stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """Runs rclone with remote `ks:` pointing at `server`; `binary` keeps stdout as bytes."""
    assert RCLONE, "rclone is installed by scripts/system-deps.sh"
    env = rclone_env(home, server.endpoint)
    out = subprocess.run([RCLONE, *args], capture_output=True, env=env, timeout=300,
                         input=stdin)
    out.stderr = out.stderr.decode(errors="replace")
    if not binary:
        out.stdout = out.stdout.decode()
    if check and out.returncode != 0:
        raise AssertionError(f"rclone {' '.join(args)} failed:\n{out.stderr}")
    return out


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def make_tree(root: Path) -> dict[str, bytes]:
    """A small tree with awkward names (spaces, unicode, reserved URL characters)
    and an empty file; returns relative path -> bytes."""
    files = {f"d{i % 4}/f{i}.bin": os.urandom(50 * i + 1) for i in range(16)}
    files["dir with space/a+b=c&d;e,f.txt"] = b"awkward\n"
    files["\u00fcn\u00ef/c\u00f6de~%20(x)!'$@.txt"] = b"unicode\n"
    files["empty.bin"] = b""
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def lsjson(server, home: Path, remote: str) -> dict[str, dict]:
    out = rclone(server, home, "lsjson", "-R", "--files-only", "--hash", "--hash-type", "md5",
                 remote).stdout
    return {entry["Path"]: entry for entry in json.loads(out)}


@pytest.fixture(scope="module")
def version(server, tmp_path_factory: pytest.TempPathFactory) -> str:
    return rclone(server, tmp_path_factory.mktemp("rclone"), "version").stdout.splitlines()[0]


@pytest.fixture(autouse=True)
def _report_version(version: str) -> None:
    print("client:", version)


def test_version_is_the_tested_one(version: str) -> None:
    found = re.match(r"rclone v(\d+)\.(\d+)", version)
    assert found, version
    major, minor = int(found[1]), int(found[2])
    assert major == TESTED_MAJOR_MINOR[0] and minor >= TESTED_MAJOR_MINOR[1], version


def test_copy_check_lsjson_md5(server, s3, bucket: str, workdir: Path) -> None:
    src = workdir / "src"
    files = make_tree(src)
    remote = f"ks:{bucket}/tree"
    rclone(server, workdir, "copy", "--checksum", str(src), remote)

    listed = lsjson(server, workdir, remote)
    assert set(listed) == set(files)
    for rel, data in files.items():
        assert listed[rel]["Size"] == len(data)
        assert listed[rel]["Hashes"]["md5"] == hashlib.md5(data).hexdigest(), rel
    # The ETag itself is the MD5 for single-part objects, as on AWS.
    for obj in s3.list_objects_v2(Bucket=bucket, Prefix="tree/")["Contents"]:
        rel = obj["Key"].removeprefix("tree/")
        assert obj["ETag"] == f'"{hashlib.md5(files[rel]).hexdigest()}"', rel

    ok = rclone(server, workdir, "check", "--checksum", str(src), remote)
    assert "0 differences found" in ok.stderr
    # Same size, different bytes: only a real MD5 comparison notices.
    victim = src / "d1" / "f5.bin"
    victim.write_bytes(bytes(b ^ 0xFF for b in victim.read_bytes()))
    bad = rclone(server, workdir, "check", "--checksum", str(src), remote, check=False)
    assert bad.returncode != 0 and "1 differences found" in bad.stderr

    back = workdir / "back"
    rclone(server, workdir, "copy", remote, str(back))
    for rel, data in files.items():  # the bucket still holds the original bytes
        assert (back / rel).read_bytes() == data, rel


def test_sync_ls_delete_move(server, s3, bucket: str, workdir: Path) -> None:
    src = workdir / "src"
    files = make_tree(src)
    remote = f"ks:{bucket}/sync"
    rclone(server, workdir, "sync", "--checksum", str(src), remote)
    again = rclone(server, workdir, "sync", "--checksum", "-v", str(src), remote)
    assert "Copied" not in again.stderr  # nothing changed, nothing sent

    (src / "d0" / "f0.bin").unlink()
    (src / "new.txt").write_bytes(b"new file\n")
    rclone(server, workdir, "sync", "--checksum", str(src), remote)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert "sync/d0/f0.bin" not in keys and "sync/new.txt" in keys
    assert len(keys) == len(files)  # one removed, one added

    ls = rclone(server, workdir, "ls", remote).stdout
    assert re.search(r"^\s*9 new\.txt$", ls, re.M)
    top = set(rclone(server, workdir, "lsf", remote).stdout.splitlines())
    assert {"d0/", "d3/", "dir with space/", "empty.bin", "new.txt"} <= top

    dst = workdir / "dst"
    rclone(server, workdir, "sync", remote, str(dst))
    for path in src.rglob("*"):
        if path.is_file():
            assert (dst / path.relative_to(src)).read_bytes() == path.read_bytes()

    rclone(server, workdir, "moveto", f"{remote}/new.txt", f"{remote}/moved/new.txt")
    rclone(server, workdir, "touch", "-t", "2020-01-02T03:04:05", f"{remote}/moved/new.txt")
    [moved] = json.loads(rclone(server, workdir, "lsjson", f"{remote}/moved/new.txt").stdout)
    assert moved["ModTime"].startswith("2020-01-02T03:04:05")
    assert rclone(server, workdir, "cat", f"{remote}/moved/new.txt").stdout == "new file\n"

    rclone(server, workdir, "delete", "--include", "*.txt", remote)
    remaining = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert remaining and not any(k.endswith(".txt") for k in remaining)
    rclone(server, workdir, "purge", remote)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_multipart_upload_and_copy(server, s3, bucket: str, workdir: Path) -> None:
    big = workdir / "big.bin"
    big.write_bytes(os.urandom(12 * MiB))
    digest = md5_of(big)
    remote = f"ks:{bucket}"
    rclone(server, workdir, "copyto", "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M",
           str(big), f"{remote}/big.bin")
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == 12 * MiB and head["ETag"].endswith('-3"')
    assert head["Metadata"]["md5chksum"]  # rclone's own MD5 for multipart objects
    assert lsjson(server, workdir, remote)["big.bin"]["Hashes"]["md5"] == digest
    assert "0 differences found" in rclone(server, workdir, "check", str(workdir), remote,
                                           "--include", "big.bin").stderr

    # Server-side copy, forced multipart (UploadPartCopy) by a small copy cutoff.
    rclone(server, workdir, "copyto", "--s3-copy-cutoff", "5M", f"{remote}/big.bin",
           f"{remote}/copy.bin")
    assert s3.head_object(Bucket=bucket, Key="copy.bin")["ETag"].endswith('-3"')
    assert rclone(server, workdir, "md5sum", f"{remote}/copy.bin").stdout.split()[0] == digest

    # Ranged reads across the 5 MiB part boundary of the copy.
    offset = 5 * MiB - 3
    part = rclone(server, workdir, "cat", "--offset", str(offset), "--count", "10",
                  f"{remote}/copy.bin", binary=True).stdout
    assert part == big.read_bytes()[offset:offset + 10]
    out = workdir / "out.bin"
    rclone(server, workdir, "copyto", f"{remote}/copy.bin", str(out))
    assert md5_of(out) == digest

    # A stream of unknown length (rcat) goes up as a multipart upload too.
    rclone(server, workdir, "rcat", "--s3-chunk-size", "5M", f"{remote}/stream.bin",
           stdin=big.read_bytes())
    assert s3.head_object(Bucket=bucket, Key="stream.bin")["ETag"].endswith('-3"')
    streamed = rclone(server, workdir, "cat", f"{remote}/stream.bin", binary=True).stdout
    assert streamed == big.read_bytes()
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
