"""Go clients against a real kurastore server: the MinIO client `mc`, `s5cmd` and the
AWS SDK for Go v2.

tests/clients/go/setup.sh builds all three from the Go module proxy, pinned by
tests/clients/go/go.mod/go.sum, once, into ${KURASTORE_CACHE:-~/.cache/kurastore}/
goclients-<hash> (outside the repository; the first build takes a few minutes).
Each client runs with a clean environment (its own HOME and config dir, the root keys
from the environment, no instance metadata lookups) and does what a user scripts:
the checks are on bytes, listings and ETags, cross-checked with boto3.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import uuid
from pathlib import Path

import pytest
from support.cli_env import sdk_env
from support.cluster import ACCESS_KEY, SECRET_KEY

# A cold machine builds the clients first (minutes); warm, the module takes ~30 s.
pytestmark = [pytest.mark.clients, pytest.mark.timeout(1200)]

GO_DIR = Path(__file__).resolve().parent / "go"
# Read at import: the autouse fixture in tests/conftest.py clears KURASTORE_* later.
CACHE = os.environ.get("KURASTORE_CACHE") or str(Path.home() / ".cache" / "kurastore")
PINNED = dict(re.findall(r"^\s+(github\.com/\S+) (v\S+)", (GO_DIR / "go.mod").read_text(), re.M))
MiB = 1 << 20


@pytest.fixture(scope="session")
def gobin() -> Path:
    proc = subprocess.run(["bash", str(GO_DIR / "setup.sh")], capture_output=True, text=True,
                          timeout=1100, env={**os.environ, "KURASTORE_CACHE": CACHE})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return Path(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(autouse=True)
def _report_versions() -> None:
    print("clients:", {m: PINNED.get(m) for m in ("github.com/minio/mc",
                                                  "github.com/peak/s5cmd/v2",
                                                  "github.com/aws/aws-sdk-go-v2/service/s3")})


def client_env(home: Path) -> dict[str, str]:
    return {
        **sdk_env(home),  # keys, no config files of the machine's user, no metadata service
        "MC_CONFIG_DIR": str(home / ".mc"),
        "NO_COLOR": "1",
    }


def run(binary: Path, home: Path, *args: str, stdin: bytes | None = None,
        check: bool = True) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([str(binary), *args], capture_output=True, input=stdin,
                          env=client_env(home), cwd=home, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"{binary.name} {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout.decode(errors='replace')[-3000:]}\n"
                             f"{proc.stderr.decode(errors='replace')[-3000:]}")
    return proc


def make_tree(root: Path) -> dict[str, bytes]:
    """Small files in two folders, a name with spaces and reserved URL characters, an
    empty file; returns relative path -> bytes."""
    files = {f"d{i % 2}/f{i}.bin": os.urandom(300 * i + 1) for i in range(6)}
    files["dir with space/a+b=c&d;e.txt"] = b"awkward\n"
    files["empty.bin"] = b""
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*")
            if p.is_file()}


def bucket_objects(s3, bucket: str, prefix: str = "") -> dict[str, bytes]:
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix) for o in page.get("Contents", [])]
    return {k.removeprefix(prefix): s3.get_object(Bucket=bucket, Key=k)["Body"].read()
            for k in keys}


def md5_etag(data: bytes, part_size: int) -> str:
    """The multipart ETag of `data` cut into `part_size` parts."""
    parts = [data[i:i + part_size] for i in range(0, len(data), part_size)]
    digest = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    return f"{digest}-{len(parts)}"


def json_lines(out: bytes) -> list[dict]:
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def test_mc(server, s3, gobin: Path, workdir: Path) -> None:
    mc = gobin / "mc"
    name = f"mc-{uuid.uuid4().hex[:10]}"
    run(mc, workdir, "alias", "set", "ks", server.endpoint, ACCESS_KEY, SECRET_KEY,
        "--api", "S3v4", "--path", "on")
    run(mc, workdir, "mb", f"ks/{name}")
    assert name in [b["Name"] for b in s3.list_buckets()["Buckets"]]

    small = workdir / "small.txt"
    small.write_bytes(b"hello from mc\n")
    big = workdir / "big.bin"
    big.write_bytes(os.urandom(33 * MiB))  # mc's parts are 16 MiB: three of them
    run(mc, workdir, "cp", str(small), f"ks/{name}/small.txt")
    run(mc, workdir, "cp", str(big), f"ks/{name}/big/big.bin")
    assert s3.head_object(Bucket=name, Key="big/big.bin")["ETag"] == \
        f'"{md5_etag(big.read_bytes(), 16 * MiB)}"'
    assert run(mc, workdir, "cat", f"ks/{name}/small.txt").stdout == small.read_bytes()
    assert run(mc, workdir, "cat", f"ks/{name}/big/big.bin").stdout == big.read_bytes()
    stat = json_lines(run(mc, workdir, "stat", "--json", f"ks/{name}/big/big.bin").stdout)[0]
    assert stat["size"] == 33 * MiB and stat["etag"].endswith("-3"), stat
    listed = json_lines(run(mc, workdir, "ls", "-r", "--json", f"ks/{name}").stdout)
    assert {e["key"]: e["size"] for e in listed} == {"small.txt": 14, "big/big.bin": 33 * MiB}

    # mirror a tree up, change it, mirror again with --remove, then mirror it back.
    src = workdir / "src"
    files = make_tree(src)
    run(mc, workdir, "mirror", str(src), f"ks/{name}/tree")
    assert bucket_objects(s3, name, "tree/") == files
    (src / "d0" / "f0.bin").unlink()
    (src / "d1" / "f1.bin").write_bytes(b"changed")
    files = read_tree(src)
    run(mc, workdir, "mirror", "--overwrite", "--remove", str(src), f"ks/{name}/tree")
    assert bucket_objects(s3, name, "tree/") == files
    run(mc, workdir, "mirror", f"ks/{name}/tree", str(workdir / "back"))
    assert read_tree(workdir / "back") == files

    # Versioning: two writes through a pipe, a delete marker, then `undo` removes it.
    run(mc, workdir, "version", "enable", f"ks/{name}")
    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
    for body in (b"v1\n", b"v2\n"):
        run(mc, workdir, "pipe", f"ks/{name}/v.txt", stdin=body)
    run(mc, workdir, "rm", f"ks/{name}/v.txt")
    versions = json_lines(run(mc, workdir, "ls", "--versions", "--json",
                              f"ks/{name}/v.txt").stdout)
    assert [v.get("versionOrdinal") for v in versions] == [3, 2, 1], versions
    assert versions[0].get("isDeleteMarker") is True
    run(mc, workdir, "undo", f"ks/{name}/v.txt")
    assert run(mc, workdir, "cat", f"ks/{name}/v.txt").stdout == b"v2\n"

    # A checksum of the client's choice goes in a trailer and is stored.
    run(mc, workdir, "cp", "--checksum", "CRC64NVME", str(small), f"ks/{name}/crc.txt")
    head = s3.head_object(Bucket=name, Key="crc.txt", ChecksumMode="ENABLED")
    assert head.get("ChecksumCRC64NVME"), head

    run(mc, workdir, "rm", "-r", "--force", f"ks/{name}/tree")
    assert not bucket_objects(s3, name, "tree/")
    run(mc, workdir, "rm", "-r", "--force", "--versions", f"ks/{name}")
    assert not s3.list_object_versions(Bucket=name).get("Versions")
    run(mc, workdir, "rb", f"ks/{name}")
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_s5cmd(server, s3, bucket: str, gobin: Path, workdir: Path) -> None:
    def s5cmd(*args: str) -> bytes:
        return run(gobin / "s5cmd", workdir, "--endpoint-url", server.endpoint, *args).stdout

    big = workdir / "big.bin"
    big.write_bytes(os.urandom(21 * MiB))
    s5cmd("--numworkers", "4", "cp", "--concurrency", "4", "--part-size", "5", str(big),
          f"s3://{bucket}/big.bin")
    assert s3.head_object(Bucket=bucket, Key="big.bin")["ETag"] == \
        f'"{md5_etag(big.read_bytes(), 5 * MiB)}"'
    assert s5cmd("cat", f"s3://{bucket}/big.bin") == big.read_bytes()

    src = workdir / "src"
    files = make_tree(src)
    s5cmd("cp", f"{src}/*", f"s3://{bucket}/tree/")
    assert bucket_objects(s3, bucket, "tree/") == files
    listed = s5cmd("ls", f"s3://{bucket}/tree/*").decode().splitlines()
    # "date time size key" per object, the key last (it may hold spaces).
    sizes = {re.split(r"\s+", line.strip(), maxsplit=3)[3]: int(line.split()[2])
             for line in listed}
    assert sizes == {rel: len(data) for rel, data in files.items()}

    s5cmd("rm", f"s3://{bucket}/tree/d1/*")
    assert set(bucket_objects(s3, bucket, "tree/")) == {k for k in files if not k.startswith("d1/")}

    # sync up, change the tree, sync with --delete, then sync it back down.
    s5cmd("sync", f"{src}/", f"s3://{bucket}/sync/")
    assert bucket_objects(s3, bucket, "sync/") == files
    (src / "d0" / "f2.bin").unlink()
    (src / "d1" / "f3.bin").write_bytes(b"a different size")
    (src / "new.txt").write_bytes(b"new\n")
    files = read_tree(src)
    s5cmd("sync", "--delete", f"{src}/", f"s3://{bucket}/sync/")
    assert bucket_objects(s3, bucket, "sync/") == files
    s5cmd("sync", f"s3://{bucket}/sync/*", f"{workdir / 'back'}/")
    assert read_tree(workdir / "back") == files


def test_go_sdk(server, s3, bucket: str, gobin: Path, workdir: Path) -> None:
    big = workdir / "big.bin"
    data = os.urandom(17 * MiB)
    big.write_bytes(data)
    out = json.loads(run(gobin / "gosdk", workdir, server.endpoint, bucket, str(big)).stdout)
    small = b"hello from the Go SDK\n"
    assert out["put_etag"] == f'"{hashlib.md5(small).hexdigest()}"'
    # The SDK sent a CRC32 trailer by default; the store answers and returns it.
    assert out["put_crc32"] and out["get_crc32"] == out["put_crc32"]
    assert out["put_checksum_type"] == "FULL_OBJECT"
    assert out["get_equal"] is True
    assert out["head"] == {"size": len(small), "type": "text/plain", "meta": {"origin": "go"},
                           "etag": out["put_etag"]}
    assert out["multipart_etag"] == f'"{md5_etag(data, 5 * MiB)}"'
    assert out["multipart_crc32"].endswith("-4")  # composite: a checksum of part checksums
    attrs = out["attributes"]  # every attribute asked for, though sent as separate lines
    assert (attrs["etag"], attrs["size"], attrs["parts"], attrs["checksum_type"]) == \
        (md5_etag(data, 5 * MiB), len(data), 4, "COMPOSITE")
    assert attrs["crc32"].split("-")[0] == out["multipart_crc32"].split("-")[0]
    assert out["download_size"] == len(data)
    assert out["download_md5"] == out["ranges_md5"] == hashlib.md5(data).hexdigest()
    assert out["keys"] == ["dir/big.bin", "dir/copy.txt", "small.txt"]
    assert out["prefixes"] == ["dir/"]
    assert out["deleted"] == 2 and out["head_after_delete"] == "true"
    assert not s3.list_objects_v2(Bucket=bucket).get("Contents")
