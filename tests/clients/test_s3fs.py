"""s3fs/fsspec with pandas against a real kurastore server.

s3fs pins aiobotocore, which pins an older botocore than the main venv's boto3, so
tests/clients/s3fs/setup.sh gives it its own virtualenv (every package pinned in
s3fs/requirements.txt), cached in ${KURASTORE_CACHE:-~/.cache/kurastore}/s3fs-<hash>.
s3fs/s3fs_job.py runs there as a subprocess: pandas writes a dataset of several
parquet files (and a hive-partitioned one, and a gzipped CSV) to s3:// and reads them
back, then random-access reads, ls/glob/find/du, cp/mv and rm. This test checks what
it saw and cross-checks the bucket with boto3.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
from pathlib import Path

import pytest
from support.cluster import ACCESS_KEY, REGION, SECRET_KEY

pytestmark = [pytest.mark.clients, pytest.mark.timeout(900)]

S3FS_DIR = Path(__file__).resolve().parent / "s3fs"
# Read at import: the autouse fixture in tests/conftest.py clears KURASTORE_* later.
CACHE = os.environ.get("KURASTORE_CACHE") or str(Path.home() / ".cache" / "kurastore")
PINNED = dict(re.findall(r"^([\w-]+)==(\S+)", (S3FS_DIR / "requirements.txt").read_text(),
                         re.M))
MiB = 1 << 20


@pytest.fixture(scope="session")
def s3fs_env() -> Path:
    proc = subprocess.run(["bash", str(S3FS_DIR / "setup.sh")], capture_output=True,
                          text=True, timeout=800, env={**os.environ, "KURASTORE_CACHE": CACHE})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return Path(proc.stdout.strip().splitlines()[-1])


def run_job(s3fs_env: Path, endpoint: str, bucket: str, home: Path) -> dict:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),  # no ~/.aws of the host
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
    }
    proc = subprocess.run([str(s3fs_env / "venv" / "bin" / "python"),
                           str(S3FS_DIR / "s3fs_job.py"), endpoint, bucket],
                          capture_output=True, text=True, env=env, cwd=home, timeout=300)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_s3fs_pandas_dataset_ranges_and_listing(server, s3, bucket: str, s3fs_env: Path,
                                                workdir: Path) -> None:
    out = run_job(s3fs_env, server.endpoint, bucket, workdir)
    print("client:", " ".join(f"{k} {v}" for k, v in out["versions"].items()))
    assert out["versions"] == {k: PINNED[k] for k in out["versions"]}

    assert out["dataset_rows"] == 20_000
    assert out["hive_g1_rows"] == sum(1 for i in range(5_000) if i % 3 == 1) * 4
    assert all(out["ranges_ok"]) and len(out["ranges_ok"]) == 8
    data = random.Random(7).randbytes(12 * MiB)
    assert out["big_sha256"] == hashlib.sha256(data).hexdigest()
    head = s3.head_object(Bucket=bucket, Key="raw/big.bin")
    assert out["big_info"] == {"size": 12 * MiB, "type": "file", "etag": head["ETag"]}
    assert head["ETag"].endswith('-3"')  # 5 + 5 + 2 MiB parts
    assert s3.get_object(Bucket=bucket, Key="raw/big.bin")["Body"].read() == data

    t = f"{bucket}/tree"
    assert out["ls"] == [f"{t}/a", f"{t}/b"]
    assert out["ls_detail"] == [[f"{t}/a", "directory"], [f"{t}/b", "directory"]]
    assert out["glob_parquet"] == [f"{bucket}/pandas/part-{i}.parquet" for i in range(4)]
    assert out["glob_deep"] == [f"{t}/a/1.txt", f"{t}/a/2.txt", f"{t}/b/3.txt"]
    assert out["find"] == out["glob_deep"]
    assert out["du"] == len(b"one") + len(b"two") + len(b"three")
    assert out["isdir"] == [True, False]
    assert out["after_cp_mv"] == [f"{t}/a/1.txt", f"{t}/a/2.txt", f"{t}/c/1.txt",
                                  f"{t}/c/2.txt", f"{t}/c/3.txt"]
    assert out["cat"] == "three"
    assert out["after_rm"] == {"tree": False, "file": False,
                               "top": [f"{bucket}/hive", f"{bucket}/pandas", f"{bucket}/raw"]}

    keys = sorted(o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=bucket) for o in page.get("Contents", []))
    assert [k for k in keys if k.startswith("pandas/")] == [
        f"pandas/part-{i}.parquet" for i in range(4)]
    hive = [k for k in keys if k.startswith("hive/")]
    assert {k.split("/")[1] for k in hive} == {"g=0", "g=1", "g=2"}
    assert all(k.endswith(".parquet") for k in hive)
    assert not [k for k in keys if k.startswith(("tree/", "csv/"))]
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
