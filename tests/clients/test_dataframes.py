"""Dataframe libraries against a real kurastore server: pyarrow.fs.S3FileSystem
(the AWS C++ SDK) and polars (the Rust object_store crate).

Both write a dataset of several parquet files, read it back and compare it with
what they wrote; both read by ranges (pyarrow: read_at/seek, polars: predicate and
projection pushdown over row groups). boto3 cross-checks what landed in the bucket.
AWS_* variables from the host are removed so only the settings below apply.
"""

from __future__ import annotations

import os

import polars as pl
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal
from support.cluster import ACCESS_KEY, REGION, SECRET_KEY

pytestmark = pytest.mark.clients

PYARROW_MAJOR = 26  # the release these tests were written against
POLARS_MAJOR = 2
MiB = 1 << 20


@pytest.fixture(autouse=True)
def _no_host_aws_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def arrow_fs(server) -> pafs.S3FileSystem:
    print("client: pyarrow", pa.__version__)
    return pafs.S3FileSystem(
        access_key=ACCESS_KEY, secret_key=SECRET_KEY, region=REGION,
        endpoint_override=server.endpoint.removeprefix("http://"), scheme="http",
    )


@pytest.fixture
def storage_options(server) -> dict[str, str]:
    print("client: polars", pl.__version__)
    return {
        "aws_endpoint_url": server.endpoint,
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET_KEY,
        "aws_region": REGION,
        "aws_allow_http": "true",
        "aws_virtual_hosted_style_request": "false",
    }


def test_versions_are_the_tested_majors() -> None:
    print("client: pyarrow", pa.__version__, "(AWS C++ SDK); polars", pl.__version__)
    assert int(pa.__version__.split(".")[0]) == PYARROW_MAJOR, pa.__version__
    assert int(pl.__version__.split(".")[0]) == POLARS_MAJOR, pl.__version__


def sample_table(rows: int) -> pa.Table:
    return pa.table({
        "id": pa.array(range(rows), pa.int64()),
        "part": pa.array([f"p{i % 3}" for i in range(rows)]),
        "v": pa.array([i * 0.5 for i in range(rows)], pa.float64()),
        "name": pa.array([f"name-{i:08d}" for i in range(rows)]),
    })


def test_pyarrow_partitioned_dataset(arrow_fs, s3, bucket: str) -> None:
    table = sample_table(30_000)
    ds.write_dataset(table, f"{bucket}/data", filesystem=arrow_fs, format="parquet",
                     partitioning=["part"], partitioning_flavor="hive",
                     max_rows_per_file=4_000, max_rows_per_group=2_000)
    infos = arrow_fs.get_file_info(pafs.FileSelector(f"{bucket}/data", recursive=True))
    files = {i.path.removeprefix(f"{bucket}/"): i.size for i in infos if i.is_file}
    listed = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    # pyarrow also leaves empty "dir/" markers, as it does on AWS.
    markers = {"data/", *(f"data/part=p{i}/" for i in range(3))}
    assert {k for k in listed if k.endswith("/")} <= markers
    assert files == {k: size for k, size in listed.items() if not k.endswith("/")}
    assert len(files) == 9  # 3 partitions x 10,000 rows / 4,000 rows per file
    assert all(k.startswith("data/part=p") and k.endswith(".parquet") for k in files)

    dataset = ds.dataset(f"{bucket}/data", filesystem=arrow_fs, format="parquet",
                         partitioning="hive")
    back = dataset.to_table().sort_by("id")
    assert back.select(["id", "v", "name"]).equals(table.select(["id", "v", "name"]))
    assert back.column("part").cast(pa.string()).to_pylist() == table.column("part").to_pylist()

    picked = dataset.to_table(columns=["id", "name"],
                              filter=(ds.field("part") == "p1") & (ds.field("id") < 1_000))
    assert sorted(picked.column("id").to_pylist()) == list(range(1, 1_000, 3))


def test_pyarrow_random_access(arrow_fs, s3, bucket: str) -> None:
    data = os.urandom(13 * MiB)
    with arrow_fs.open_output_stream(f"{bucket}/raw/big.bin") as out:
        for start in range(0, len(data), MiB):
            out.write(data[start:start + MiB])
    head = s3.head_object(Bucket=bucket, Key="raw/big.bin")
    assert head["ContentLength"] == len(data) and "-" in head["ETag"]  # a multipart upload

    with arrow_fs.open_input_file(f"{bucket}/raw/big.bin") as f:
        assert f.size() == len(data)
        for offset in (0, 123_457, 5 * MiB - 10, 10 * MiB - 1, len(data) - 1_000):
            assert f.read_at(1_000, offset) == data[offset:offset + 1_000], offset
        assert f.read_at(100, len(data) - 10) == data[-10:]
        f.seek(7 * MiB)
        assert f.read(10) == data[7 * MiB:7 * MiB + 10] and f.tell() == 7 * MiB + 10

    table = sample_table(20_000)
    pq.write_table(table, f"{bucket}/one.parquet", filesystem=arrow_fs, row_group_size=5_000)
    with arrow_fs.open_input_file(f"{bucket}/one.parquet") as f:
        parquet = pq.ParquetFile(f)
        assert parquet.num_row_groups == 4
        assert parquet.read_row_group(2).equals(table.slice(10_000, 5_000))

    arrow_fs.copy_file(f"{bucket}/raw/big.bin", f"{bucket}/raw/copy.bin")
    arrow_fs.move(f"{bucket}/raw/copy.bin", f"{bucket}/moved/copy.bin")
    with arrow_fs.open_input_stream(f"{bucket}/moved/copy.bin") as f:
        assert f.read() == data
    assert arrow_fs.get_file_info(f"{bucket}/raw/copy.bin").type == pafs.FileType.NotFound
    arrow_fs.delete_dir_contents(f"{bucket}/raw")
    assert arrow_fs.get_file_info(f"{bucket}/raw/big.bin").type == pafs.FileType.NotFound


def sample_frame(rows: int) -> pl.DataFrame:
    return pl.DataFrame({"id": pl.int_range(0, rows, eager=True)}).with_columns(
        g=(pl.col("id") % 4).cast(pl.Int32),
        h=pl.col("id").hash(42),
        name=pl.format("row-{}", pl.col("id")),
        x=pl.col("id") * 1.5,
    )


def test_polars_write_read_scan(storage_options, s3, bucket: str) -> None:
    df = sample_frame(400_000)
    url = f"s3://{bucket}/frames/one.parquet"
    df.write_parquet(url, storage_options=storage_options, row_group_size=50_000)
    assert s3.head_object(Bucket=bucket, Key="frames/one.parquet")["ContentLength"] > 2 * MiB

    assert_frame_equal(pl.read_parquet(url, storage_options=storage_options), df)
    # Predicate and projection pushdown: only some row groups and columns are fetched.
    picked = (pl.scan_parquet(url, storage_options=storage_options)
              .filter(pl.col("id").is_between(123_000, 123_009)).select("id", "name").collect())
    assert_frame_equal(picked, df.filter(pl.col("id").is_between(123_000, 123_009))
                       .select("id", "name"))


def test_polars_dataset_of_several_files(storage_options, s3, bucket: str) -> None:
    df = sample_frame(60_000)
    df.write_parquet(f"s3://{bucket}/hive/", storage_options=storage_options, partition_by="g")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="hive/")["Contents"])
    assert [k.split("/")[1] for k in keys] == ["g=0", "g=1", "g=2", "g=3"]
    assert all(k.endswith(".parquet") for k in keys)

    back = pl.scan_parquet(f"s3://{bucket}/hive/**/*.parquet", storage_options=storage_options,
                           hive_partitioning=True).collect()
    assert_frame_equal(back.sort("id").select(df.columns), df, check_dtypes=False)

    for i in range(3):
        df.filter(pl.col("id") % 3 == i).write_parquet(
            f"s3://{bucket}/flat/part-{i}.parquet", storage_options=storage_options)
    lazy = pl.scan_parquet(f"s3://{bucket}/flat/*.parquet", storage_options=storage_options)
    assert lazy.select(pl.len()).collect().item() == df.height
    assert_frame_equal(lazy.collect().sort("id"), df)
    counted = lazy.filter(pl.col("g") == 1).group_by("g").agg(pl.len()).collect()
    assert counted.row(0) == (1, df.height // 4)
