"""A Spark job over Hadoop's S3A connector, run by tests/clients/test_spark.py with the
python of the Spark venv (setup.sh): `python s3a_job.py ENDPOINT BUCKET ENV_DIR`.

Does what a Spark user does on S3 and prints one JSON document on stdout with what it
saw; the test checks it and cross-checks the bucket with boto3. Spark's own logs go to
stderr. Credentials come from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_REGION.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pyspark
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

ROWS = 20_000
PARTS = 4
# Spark SQL's binding to Hadoop's PathOutputCommitters (spark-hadoop-cloud).
CLOUD = "org.apache.spark.internal.io.cloud"
STARTED = time.monotonic()


def step(name: str) -> None:
    """Progress on stderr, so a slow or stuck run shows where it was."""
    print(f"s3a_job: {time.monotonic() - STARTED:6.1f}s {name}", file=sys.stderr, flush=True)


def session(endpoint: str, classpath: str) -> SparkSession:
    s3a = {
        "fs.s3a.endpoint": endpoint,
        "fs.s3a.endpoint.region": os.environ["AWS_REGION"],
        "fs.s3a.path.style.access": "true",
        "fs.s3a.connection.ssl.enabled": "false",
        "fs.s3a.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "fs.s3a.access.key": os.environ["AWS_ACCESS_KEY_ID"],
        "fs.s3a.secret.key": os.environ["AWS_SECRET_ACCESS_KEY"],
        # Fail in seconds rather than retrying for minutes when something is wrong.
        "fs.s3a.attempts.maximum": "2",
        "fs.s3a.retry.limit": "2",
        # Committers are chosen per filesystem scheme through this factory.
        "mapreduce.outputcommitter.factory.scheme.s3a":
            "org.apache.hadoop.fs.s3a.commit.S3ACommitterFactory",
    }
    builder = (SparkSession.builder.master("local[2]").appName("kurastore-s3a")
               .config("spark.driver.memory", "1g")
               .config("spark.driver.extraClassPath", classpath)
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               # A short job on a small machine: C1 only, one GC thread.
               .config("spark.driver.extraJavaOptions",
                       "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
               .config("spark.sql.shuffle.partitions", "4")
               .config("spark.sql.adaptive.enabled", "false"))
    for key, value in s3a.items():
        builder = builder.config(f"spark.hadoop.{key}", value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def use_committer(spark: SparkSession, name: str) -> None:
    """Switch the committer between writes, as a user would between jobs."""
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    if name == "file":
        spark.conf.unset("spark.sql.sources.commitProtocolClass")
        spark.conf.unset("spark.sql.parquet.output.committer.class")
        hconf.unset("fs.s3a.committer.name")
        return
    spark.conf.set("spark.sql.sources.commitProtocolClass", f"{CLOUD}.PathOutputCommitProtocol")
    spark.conf.set("spark.sql.parquet.output.committer.class",
                   f"{CLOUD}.BindingParquetOutputCommitter")
    hconf.set("fs.s3a.committer.name", name)
    hconf.set("fs.s3a.committer.magic.enabled", "true")


def missing(fs, path) -> str:
    try:
        fs.getFileStatus(path)
        return "found"
    except Exception as exc:  # py4j wraps java.io.FileNotFoundException
        text = str(exc)
        return "FileNotFoundException" if "FileNotFoundException" in text else text


def markers(fs, path, root: str) -> dict:
    """mkdirs, probes of the empty directory and its parent, files in and out of it."""
    seen = {"mkdirs": fs.mkdirs(path(f"{root}/sub"))}
    seen["parent_is_dir"] = fs.getFileStatus(path(root)).isDirectory()
    seen["sub_is_dir"] = fs.getFileStatus(path(f"{root}/sub")).isDirectory()
    seen["empty_listing"] = [s.getPath().getName() for s in fs.listStatus(path(f"{root}/sub"))]
    for name in ("a.txt", "b.txt"):
        stream = fs.create(path(f"{root}/sub/{name}"), True)
        stream.write(bytearray(f"{name} written by s3a\n".encode()))
        stream.close()
    status = fs.getFileStatus(path(f"{root}/sub/a.txt"))
    seen["file"] = [status.getLen(), status.isDirectory()]
    seen["delete_file"] = fs.delete(path(f"{root}/sub/a.txt"), False)
    seen["listing"] = [s.getPath().getName() for s in fs.listStatus(path(f"{root}/sub"))]
    seen["missing_child"] = missing(fs, path(f"{root}/sub/a.txt"))
    return seen


def per_partition(df) -> dict[str, list[int]]:
    """Rows, the sum of ids and a checksum of every row's content in each partition,
    in one Spark job (so two datasets compare without a shuffle of both)."""
    digest = F.sum(F.xxhash64("id", "name", "x") % (1 << 40))
    rows = df.groupBy("part").agg(F.count("*"), F.sum("id"), digest).collect()
    return {str(r[0]): [r[1], r[2], r[3]] for r in rows}


def main(endpoint: str, bucket: str, env_dir: str) -> dict:
    classpath = Path(env_dir, "classpath.txt").read_text().strip()  # written by Maven
    spark = session(endpoint, classpath)
    jvm = spark.sparkContext._jvm
    hconf = spark.sparkContext._jsc.hadoopConfiguration()
    base = f"s3a://{bucket}"
    fs = jvm.org.apache.hadoop.fs.Path(base + "/").getFileSystem(hconf)

    def path(rel: str):
        return jvm.org.apache.hadoop.fs.Path(f"{base}/{rel}")

    def names(statuses) -> list[str]:
        return sorted(s.getPath().toUri().getPath().removeprefix("/") for s in statuses)

    out: dict = {
        "spark": pyspark.__version__,
        "hadoop": jvm.org.apache.hadoop.util.VersionInfo.getVersion(),
        "java": jvm.java.lang.System.getProperty("java.version"),
        "fs": fs.getClass().getName(),
    }
    df = (spark.range(0, ROWS, numPartitions=3)
          .withColumn("part", (F.col("id") % PARTS).cast("int"))
          .withColumn("name", F.format_string("row-%08d", F.col("id")))
          .withColumn("x", F.col("id") * 1.5))

    # 1. The default committer: FileOutputCommitter, task output under _temporary/ renamed
    #    into place (copy + delete on S3).
    step("session started")
    use_committer(spark, "file")
    df.write.mode("overwrite").partitionBy("part").parquet(f"{base}/classic")
    classic = spark.read.parquet(f"{base}/classic")
    out["classic"] = per_partition(classic)

    # 2. The S3A magic committer: tasks upload straight to the destination as pending
    #    multipart uploads, the job commit completes them and writes a JSON _SUCCESS.
    step("default committer: written and read")
    use_committer(spark, "magic")
    df.write.mode("overwrite").partitionBy("part").parquet(f"{base}/magic")
    magic = spark.read.parquet(f"{base}/magic")
    out["magic"] = per_partition(magic)
    out["magic_one_partition"] = spark.read.parquet(f"{base}/magic/part=2").count()
    step("magic committer: written and read")
    use_committer(spark, "file")

    # 3. Filesystem operations through the Hadoop FileSystem API.
    out["glob"] = names(fs.globStatus(path("magic/part=[13]/*.parquet")))
    out["glob_dirs"] = names(fs.globStatus(path("*/part=0")))
    out["list_magic"] = names(fs.listStatus(path("magic")))
    out["list_classic"] = names(fs.listStatus(path("classic")))
    out["classic_is_dir"] = fs.getFileStatus(path("classic")).isDirectory()
    out["rename"] = fs.rename(path("classic"), path("renamed/classic"))
    out["after_rename"] = {
        "old_exists": fs.exists(path("classic")),
        "count": spark.read.parquet(f"{base}/renamed/classic").count(),
        "glob_count": spark.read.parquet(f"{base}/renamed/*/part=[02]").count(),
    }
    step("globbed, listed, renamed")
    out["missing"] = missing(fs, path("missing"))
    out["delete"] = fs.delete(path("renamed"), True)
    out["after_delete"] = {"renamed": fs.exists(path("renamed")),
                           "classic": fs.exists(path("renamed/classic"))}
    # Empty directories are "dir/" marker objects. Hadoop 3.4 keeps markers of non-empty
    # directories by default; older clients delete them ("delete" retention policy).
    out["markers_keep"] = markers(fs, path, "markers/keep")
    conf = jvm.org.apache.hadoop.conf.Configuration(hconf)
    conf.set("fs.s3a.directory.marker.retention", "delete")
    deleting = jvm.org.apache.hadoop.fs.FileSystem.newInstance(jvm.java.net.URI(base + "/"), conf)
    out["markers_delete"] = markers(deleting, path, "markers/delete")
    deleting.close()
    step("markers probed, deleted")
    spark.stop()
    return out


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])))
