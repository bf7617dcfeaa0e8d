"""s3cmd (Debian's package) against a real kurastore server.

s3cmd reads a private config file written per test (path style through
host_base == host_bucket, plain HTTP, SigV4) and runs with a clean environment.
For single-part objects `ls --list-md5` shows the ETag, which must be the MD5 of the
bytes as on AWS; for multipart ones s3cmd keeps the MD5 in x-amz-meta-s3cmd-attrs.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from support.cluster import ACCESS_KEY, REGION, SECRET_KEY

pytestmark = pytest.mark.clients

S3CMD = shutil.which("s3cmd")
TESTED_MAJOR = 2  # Debian bookworm ships 2.3.0
MiB = 1 << 20


def s3cmd(server, home: Path, *args: str, check: bool = True,
          stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Runs s3cmd with a config for `server` kept in `home`."""
    assert S3CMD, "s3cmd is installed by scripts/system-deps.sh"
    config = home / ".s3cfg"
    if not config.exists():
        host = server.endpoint.removeprefix("http://")
        config.write_text(
            "[default]\n"
            f"access_key = {ACCESS_KEY}\n"
            f"secret_key = {SECRET_KEY}\n"
            f"host_base = {host}\n"
            f"host_bucket = {host}\n"
            f"bucket_location = {REGION}\n"
            "use_https = False\n"
            "signature_v2 = False\n"
        )
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    out = subprocess.run([S3CMD, "-c", str(config), *args], capture_output=True, env=env,
                         timeout=300, input=stdin)
    out.stdout, out.stderr = out.stdout.decode(), out.stderr.decode(errors="replace")
    if check and out.returncode != 0:
        raise AssertionError(f"s3cmd {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}")
    return out


def listed_md5(server, home: Path, url: str) -> dict[str, tuple[int, str]]:
    """url -> (size, md5) from `s3cmd ls -r --list-md5`."""
    found = {}
    for line in s3cmd(server, home, "ls", "-r", "--list-md5", url).stdout.splitlines():
        _date, _time, size, md5, name = line.split(None, 4)
        found[name] = (int(size), md5)
    return found


@pytest.fixture(scope="module")
def version(server, tmp_path_factory: pytest.TempPathFactory) -> str:
    return s3cmd(server, tmp_path_factory.mktemp("s3cmd"), "--version").stdout.strip()


@pytest.fixture(autouse=True)
def _report_version(version: str) -> None:
    print("client:", version)


def test_version_is_the_tested_one(version: str) -> None:
    found = re.match(r"s3cmd version (\d+)\.(\d+)", version)
    assert found and int(found[1]) == TESTED_MAJOR, version


def test_mb_put_get_ls_info_cp_mv_del_rb(server, workdir: Path) -> None:
    name = f"s3cmd-{uuid.uuid4().hex[:8]}"
    s3cmd(server, workdir, "mb", f"s3://{name}")
    assert f"s3://{name}" in s3cmd(server, workdir, "ls").stdout
    src = workdir / "a file+x.txt"
    src.write_bytes(b"hello from s3cmd\n" * 100)
    s3cmd(server, workdir, "put", "--mime-type=text/plain", str(src), f"s3://{name}/dir/")
    url = f"s3://{name}/dir/a file+x.txt"
    assert listed_md5(server, workdir, f"s3://{name}") == {
        url: (src.stat().st_size, hashlib.md5(src.read_bytes()).hexdigest())}

    info = s3cmd(server, workdir, "info", url).stdout
    assert re.search(r"MIME type:\s+text/plain", info)
    assert re.search(rf"MD5 sum:\s+{hashlib.md5(src.read_bytes()).hexdigest()}", info)
    bucket_info = s3cmd(server, workdir, "info", f"s3://{name}").stdout
    assert re.search(rf"Location:\s+{REGION}", bucket_info)
    assert re.search(r"Payer:\s+BucketOwner", bucket_info)  # as AWS reports it

    got = workdir / "got.txt"
    s3cmd(server, workdir, "get", url, str(got))
    assert got.read_bytes() == src.read_bytes()

    s3cmd(server, workdir, "cp", url, f"s3://{name}/copy.txt")
    s3cmd(server, workdir, "mv", f"s3://{name}/copy.txt", f"s3://{name}/moved.txt")
    s3cmd(server, workdir, "modify", "--add-header=Content-Type:text/csv", f"s3://{name}/moved.txt")
    assert re.search(r"MIME type:\s+text/csv",
                     s3cmd(server, workdir, "info", f"s3://{name}/moved.txt").stdout)
    assert set(listed_md5(server, workdir, f"s3://{name}")) == {url, f"s3://{name}/moved.txt"}
    du = s3cmd(server, workdir, "du", f"s3://{name}").stdout.split()
    assert int(du[0]) == 2 * src.stat().st_size and du[1] == "2"

    refused = s3cmd(server, workdir, "rb", f"s3://{name}", check=False)
    assert refused.returncode != 0 and "BucketNotEmpty" in refused.stderr
    s3cmd(server, workdir, "del", url)
    s3cmd(server, workdir, "del", "--recursive", "--force", f"s3://{name}/")
    s3cmd(server, workdir, "rb", f"s3://{name}")
    assert f"s3://{name}" not in s3cmd(server, workdir, "ls").stdout


def test_sync_both_ways(server, bucket: str, workdir: Path) -> None:
    src = workdir / "src"
    files = {f"d{i % 3}/f{i}.bin": os.urandom(100 * i + 1) for i in range(12)}
    files["sp ace/\u00fcn\u00ef&=.txt"] = b"awkward name\n"
    files["empty.bin"] = b""
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    base = f"s3://{bucket}/tree/"
    s3cmd(server, workdir, "sync", f"{src}/", base)
    listed = listed_md5(server, workdir, base)
    assert listed == {base + rel: (len(data), hashlib.md5(data).hexdigest())
                      for rel, data in files.items()}
    again = s3cmd(server, workdir, "sync", f"{src}/", base).stdout
    assert "upload:" not in again  # MD5s match: nothing to send

    (src / "d0" / "f0.bin").unlink()
    (src / "d1" / "f1.bin").write_bytes(b"changed")
    out = s3cmd(server, workdir, "sync", "--delete-removed", f"{src}/", base).stdout
    assert f"delete: '{base}d0/f0.bin'" in out and "d1/f1.bin" in out
    listed = listed_md5(server, workdir, base)
    assert base + "d0/f0.bin" not in listed
    assert listed[base + "d1/f1.bin"] == (7, hashlib.md5(b"changed").hexdigest())

    dst = workdir / "dst"
    s3cmd(server, workdir, "sync", base, f"{dst}/")
    local = {str(p.relative_to(src)): p.read_bytes() for p in src.rglob("*") if p.is_file()}
    back = {str(p.relative_to(dst)): p.read_bytes() for p in dst.rglob("*") if p.is_file()}
    assert back == local

    s3cmd(server, workdir, "del", "--recursive", base)
    assert listed_md5(server, workdir, f"s3://{bucket}") == {}


def test_multipart_put_12mib(server, s3, bucket: str, workdir: Path) -> None:
    big = workdir / "big.bin"
    big.write_bytes(os.urandom(12 * MiB))
    digest = hashlib.md5(big.read_bytes()).hexdigest()
    url = f"s3://{bucket}/big.bin"
    s3cmd(server, workdir, "put", "--multipart-chunk-size-mb=5", str(big), url)
    head = s3.head_object(Bucket=bucket, Key="big.bin")
    assert head["ContentLength"] == 12 * MiB
    assert head["ETag"].endswith('-3"')  # 5 + 5 + 2 MiB
    assert f"md5:{digest}" in head["Metadata"]["s3cmd-attrs"]
    assert listed_md5(server, workdir, url) == {url: (12 * MiB, digest)}
    assert s3cmd(server, workdir, "multipart", f"s3://{bucket}").stdout.strip().endswith("Id")

    out = workdir / "dl" / "big.bin"
    out.parent.mkdir()
    s3cmd(server, workdir, "get", url, str(out))
    assert out.read_bytes() == big.read_bytes()
    # Syncing the unchanged object again is skipped: the stored MD5 matches.
    skipped = s3cmd(server, workdir, "sync", f"s3://{bucket}/", f"{out.parent}/").stdout
    assert "download:" not in skipped

    # From stdin the size is unknown: s3cmd streams it as a multipart upload.
    s3cmd(server, workdir, "put", "--multipart-chunk-size-mb=5", "-", f"s3://{bucket}/stdin.bin",
          stdin=big.read_bytes())
    assert s3.head_object(Bucket=bucket, Key="stdin.bin")["ETag"].endswith('-3"')
    s3cmd(server, workdir, "get", f"s3://{bucket}/stdin.bin", str(workdir / "stdin.out"))
    assert (workdir / "stdin.out").read_bytes() == big.read_bytes()
