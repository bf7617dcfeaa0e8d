"""The AWS SDK for Java v2 (the S3 client Hadoop 3.4's S3A uses) against a real
kurastore server.

tests/clients/java/setup.sh fetches the SDK from Maven Central (java/pom.xml, the
version from the SDK's BOM) and compiles java/S3Job.java once, into
${KURASTORE_CACHE:-~/.cache/kurastore}/javasdk-<hash>, outside the repository.
S3Job configures the clients as S3A does (path style, static keys, a fixed region)
and leaves the SDK's checksum defaults alone: uploads go as aws-chunked bodies with
CRC32 trailers, downloads ask for checksums to validate. It prints what it saw;
this test checks that and cross-checks the bucket with boto3.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from support.cli_env import sdk_env

pytestmark = [pytest.mark.clients, pytest.mark.timeout(900)]

JAVA_DIR = Path(__file__).resolve().parent / "java"
# Read at import: the autouse fixture in tests/conftest.py clears KURASTORE_* later.
CACHE = os.environ.get("KURASTORE_CACHE") or str(Path.home() / ".cache" / "kurastore")
MiB = 1 << 20


def jdk17_home() -> Path:
    """Debian's Java 17 JDK (scripts/system-deps.sh), else whatever `javac` is on PATH."""
    found = sorted(Path("/usr/lib/jvm").glob("java-17-openjdk-*/bin/javac"))
    javac = found[0] if found else Path(shutil.which("javac") or "javac").resolve()
    banner = subprocess.run([str(javac), "-version"], capture_output=True, text=True)
    assert re.search(r"javac 17\.", banner.stdout + banner.stderr), banner
    return javac.parent.parent


@pytest.fixture(scope="session")
def java_env() -> tuple[Path, Path]:
    """(the JDK's home, the prepared client directory)."""
    home = jdk17_home()
    proc = subprocess.run(["bash", str(JAVA_DIR / "setup.sh")], capture_output=True,
                          text=True, timeout=800,
                          env={**os.environ, "KURASTORE_CACHE": CACHE, "JAVA_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return home, Path(proc.stdout.strip().splitlines()[-1])


def test_put_get_list_multipart_head_delete(server, s3, bucket: str,
                                            java_env: tuple[Path, Path], workdir: Path) -> None:
    jdk, prepared = java_env
    print("client:", (prepared / "versions").read_text().strip())
    data = os.urandom(17 * MiB)
    big = workdir / "big.bin"
    big.write_bytes(data)
    classpath = f"{prepared / 'classes'}:{(prepared / 'classpath.txt').read_text().strip()}"
    proc = subprocess.run([str(jdk / "bin" / "java"), "-cp", classpath, "S3Job",
                           server.endpoint, bucket, str(big)],
                          capture_output=True, text=True, env=sdk_env(workdir), cwd=workdir,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-6000:]
    facts = dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)

    small = b"hello from the Java SDK\n"
    assert facts["put_etag"] == f'"{hashlib.md5(small).hexdigest()}"'
    # CRC32 went in an aws-chunked trailer; the store verified, kept and returns it.
    assert facts["put_crc32"] != "null" and facts["get_crc32"] == facts["put_crc32"]
    assert facts["put_checksum_type"] == "FULL_OBJECT"
    assert facts["get_equal"] == "true" and facts["crc32c_equal"] == "true"
    assert (facts["head_size"], facts["head_type"], facts["head_meta"]) == \
        (str(len(small)), "text/plain", "java")
    parts = [data[i:i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
    etag = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
    assert facts["manual_etag"] == facts["auto_etag"] == f'"{etag}-{len(parts)}"'
    assert facts["manual_parts"] == str(len(parts))
    assert facts["attrs"] == f"{etag}-{len(parts)},{len(data)},{len(parts)}"
    whole = hashlib.md5(data).hexdigest()
    assert facts["manual_md5"] == facts["auto_md5"] == whole
    assert facts["range_md5"] == hashlib.md5(data[100:200]).hexdigest()
    assert facts["keys"] == "dir/auto.bin,dir/copy.txt,dir/crc32c.txt,dir/manual.bin,small.txt"
    assert facts["prefixes"] == "dir/"
    assert facts["deleted"] == "4" and facts["head_after_delete"] == "404"
    assert not s3.list_objects_v2(Bucket=bucket).get("Contents")
