"""Spark with Hadoop's S3A connector against a real kurastore server.

tests/clients/spark/setup.sh makes the client once, outside the repository and the
main venv: pyspark pinned in spark/requirements.txt in its own virtualenv, and from
Maven Central (spark/pom.xml) hadoop-aws of the Hadoop release that pyspark ships, the
AWS SDK v2 bundle it declares and spark-hadoop-cloud (the committer binding). It is
cached in ${KURASTORE_CACHE:-~/.cache/kurastore}/spark-<hash>.

spark/s3a_job.py runs as a subprocess (local[2], 1 GiB driver, Java 17): a partitioned
parquet dataset written with the default FileOutputCommitter and with the S3A magic
committer, read back and counted, a directory renamed, globbed, listed and deleted,
empty-directory markers probed. This test checks what the job saw, then what landed
in the bucket with boto3 and pyarrow.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support.cluster import ACCESS_KEY, REGION, SECRET_KEY

# The first run downloads ~1.1 GB (minutes); later runs take about a minute.
pytestmark = [pytest.mark.clients, pytest.mark.timeout(1800)]

SPARK_DIR = Path(__file__).resolve().parent / "spark"
# Read at import: the autouse fixture in tests/conftest.py clears KURASTORE_* later.
CACHE = os.environ.get("KURASTORE_CACHE") or str(Path.home() / ".cache" / "kurastore")
PINNED = dict(re.findall(r"^([\w-]+)==(\S+)", (SPARK_DIR / "requirements.txt").read_text(),
                         re.M))
ROWS, PARTS, TASKS = 20_000, 4, 3


def java17_home() -> Path:
    """Debian's Java 17 (scripts/system-deps.sh), else whatever `java` is on PATH."""
    found = sorted(Path("/usr/lib/jvm").glob("java-17-openjdk-*/bin/java"))
    java = found[0] if found else Path(shutil.which("java") or "java").resolve()
    banner = subprocess.run([str(java), "-version"], capture_output=True, text=True).stderr
    assert re.search(r'version "17\.', banner), f"Spark's test runs on Java 17: {banner}"
    return java.parent.parent


@pytest.fixture(scope="session")
def spark_env() -> Path:
    proc = subprocess.run(["bash", str(SPARK_DIR / "setup.sh")], capture_output=True,
                          text=True, timeout=1700, env={**os.environ, "KURASTORE_CACHE": CACHE})
    assert proc.returncode == 0, proc.stderr[-4000:]
    return Path(proc.stdout.strip().splitlines()[-1])


def run_job(spark_env: Path, endpoint: str, bucket: str, home: Path) -> dict:
    java_home = java17_home()
    env = {
        "PATH": f"{java_home}/bin:" + os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),  # no ~/.aws, ~/.ivy2 or spark-defaults of the host
        "JAVA_HOME": str(java_home),
        "PYSPARK_PYTHON": str(spark_env / "venv" / "bin" / "python"),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
    }
    proc = subprocess.run(
        [str(spark_env / "venv" / "bin" / "python"), str(SPARK_DIR / "s3a_job.py"), endpoint,
         bucket, str(spark_env)], capture_output=True, text=True, env=env, cwd=home,
        timeout=600)
    assert proc.returncode == 0, proc.stderr[-6000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_spark_s3a_committers_and_filesystem(server, s3, bucket: str, spark_env: Path,
                                             workdir: Path) -> None:
    installed = dict(line.split("=", 1) for line in
                     (spark_env / "versions").read_text().split())
    jars = [Path(p).name for p in (spark_env / "classpath.txt").read_text().strip().split(":")]
    out = run_job(spark_env, server.endpoint, bucket, workdir)
    sdk = next(j for j in jars if j.startswith("bundle-"))
    print("client: pyspark", out["spark"], "hadoop-aws", out["hadoop"], "aws sdk", sdk,
          "java", out["java"])
    assert out["spark"] == PINNED["pyspark"] == installed["spark"]
    assert out["hadoop"] == installed["hadoop"]
    assert f"hadoop-aws-{out['hadoop']}.jar" in jars
    assert f"spark-hadoop-cloud_2.13-{out['spark']}.jar" in jars
    assert out["fs"] == "org.apache.hadoop.fs.s3a.S3AFileSystem"

    # Rows and sum of ids per partition; the third figure is a checksum of the rows'
    # content, equal when both committers stored the same rows.
    assert {p: v[:2] for p, v in out["classic"].items()} == {
        str(p): [ROWS // PARTS, sum(range(p, ROWS, PARTS))] for p in range(PARTS)}
    assert out["list_classic"] == ["classic/_SUCCESS"] + [f"classic/part={p}"
                                                          for p in range(PARTS)]
    assert out["magic"] == out["classic"]
    assert out["magic_one_partition"] == ROWS // PARTS

    # Globs, listings and the rename of a directory tree.
    assert len(out["glob"]) == 2 * TASKS
    assert all(re.fullmatch(r"magic/part=[13]/part-\d+-.*\.parquet", k) for k in out["glob"])
    assert out["glob_dirs"] == ["classic/part=0", "magic/part=0"]
    assert out["list_magic"] == ["magic/_SUCCESS"] + [f"magic/part={p}" for p in range(PARTS)]
    assert out["classic_is_dir"] and out["rename"]
    assert out["after_rename"] == {"old_exists": False, "count": ROWS,
                                   "glob_count": ROWS // 2}
    assert out["missing"] == "FileNotFoundException"
    assert out["delete"] and out["after_delete"] == {"renamed": False, "classic": False}
    # Empty directories are "dir/" marker objects; probes and deletes treat them as AWS does.
    for policy in ("keep", "delete"):
        assert out[f"markers_{policy}"] == {
            "mkdirs": True, "parent_is_dir": True, "sub_is_dir": True, "empty_listing": [],
            "file": [len(b"a.txt written by s3a\n"), False], "delete_file": True,
            "listing": ["b.txt"], "missing_child": "FileNotFoundException"}, policy

    # What is left in the bucket: the magic committer's dataset and markers/.
    keys = {o["Key"]: o["Size"] for page in s3.get_paginator("list_objects_v2")
            .paginate(Bucket=bucket) for o in page.get("Contents", [])}
    data = sorted(k for k in keys if k.endswith(".parquet"))
    assert len(data) == PARTS * TASKS
    assert all(k.startswith("magic/part=") for k in data)
    # The "keep" policy (Hadoop 3.4's default) leaves the marker of a directory that has
    # files; "delete" removed it with a bulk delete, missing parent markers included.
    assert {k: size for k, size in keys.items() if k.startswith("markers/")} == {
        "markers/keep/sub/": 0, "markers/keep/sub/b.txt": 21, "markers/delete/sub/b.txt": 21}
    # The committer's own work is gone (no _temporary/, __magic*/ or pending uploads);
    # the marker of the destination directory stays (the "keep" policy, as on AWS).
    rest = {k: size for k, size in keys.items() if not k.startswith("markers/")}
    assert sorted(rest) == sorted(["magic/", "magic/_SUCCESS", *data])
    assert rest["magic/"] == 0
    # The probe S3A makes for "is this a directory": one key under the prefix is enough.
    probe = s3.list_objects_v2(Bucket=bucket, Prefix="magic/", Delimiter="/", MaxKeys=1)
    assert probe["KeyCount"] == 1 and probe["IsTruncated"]
    assert [o["Key"] for o in probe["Contents"]] == ["magic/"] and "CommonPrefixes" not in probe
    probe = s3.list_objects_v2(Bucket=bucket, Prefix="magic/part=1", Delimiter="/", MaxKeys=1)
    assert probe["KeyCount"] == 1 and [p["Prefix"] for p in probe["CommonPrefixes"]] == [
        "magic/part=1/"]
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    success = json.loads(s3.get_object(Bucket=bucket, Key="magic/_SUCCESS")["Body"].read())
    assert success["committer"] == "magic" and success["success"] is True
    assert sorted(f.removeprefix("/") for f in success["filenames"]) == data
    rows = 0
    for key in data:
        table = pq.read_table(io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
        part = int(key.split("/")[1].removeprefix("part="))
        for row in table.to_pylist():
            assert row["id"] % PARTS == part and "part" not in row  # the path holds it
            assert row["name"] == f"row-{row['id']:08d}" and row["x"] == row["id"] * 1.5
        rows += table.num_rows
    assert rows == ROWS
