"""s3fs/fsspec with pandas, run by tests/clients/test_s3fs.py with the python of the
s3fs venv (setup.sh): `python s3fs_job.py ENDPOINT BUCKET`.

Does what a pandas user does with s3:// URLs and an fsspec filesystem, checks the
round trips itself (pandas.testing) and prints one JSON document on stdout with what
it saw, for the test to check and to cross-check with boto3. Credentials come from
AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_REGION.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from importlib.metadata import version

import pandas as pd
import s3fs
from pandas.testing import assert_frame_equal

MiB = 1 << 20
CLIENTS = ("s3fs", "fsspec", "aiobotocore", "botocore", "pandas", "pyarrow")


def frame(rows: int, seed: int) -> pd.DataFrame:
    rng = random.Random(seed)
    return pd.DataFrame({
        "id": range(seed * rows, (seed + 1) * rows),
        "g": [i % 3 for i in range(rows)],
        "x": [rng.random() for _ in range(rows)],
        "name": [f"name-{rng.getrandbits(32):08x}" for _ in range(rows)],
    })


def main(endpoint: str, bucket: str) -> dict:
    options = {
        "key": os.environ["AWS_ACCESS_KEY_ID"],
        "secret": os.environ["AWS_SECRET_ACCESS_KEY"],
        "endpoint_url": endpoint,
        "client_kwargs": {"region_name": os.environ["AWS_REGION"]},
        "config_kwargs": {"s3": {"addressing_style": "path"}},
    }
    fs = s3fs.S3FileSystem(**options)
    out: dict = {"versions": {name: version(name) for name in CLIENTS}}

    # A dataset of several parquet files written one by one, read back as one frame.
    frames = [frame(5_000, seed) for seed in range(4)]
    for i, df in enumerate(frames):
        df.to_parquet(f"s3://{bucket}/pandas/part-{i}.parquet", storage_options=options,
                      index=False)
    back = pd.read_parquet(f"s3://{bucket}/pandas/", storage_options=options)
    whole = pd.concat(frames, ignore_index=True)
    assert_frame_equal(back.sort_values("id").reset_index(drop=True), whole)
    out["dataset_rows"] = len(back)
    # Partitioned (hive) by pyarrow over the fsspec filesystem, filtered on read.
    whole.to_parquet(f"s3://{bucket}/hive", partition_cols=["g"], storage_options=options,
                     index=False)
    g1 = pd.read_parquet(f"s3://{bucket}/hive", storage_options=options, filters=[("g", "=", 1)])
    expected = whole[whole["g"] == 1].drop(columns="g").reset_index(drop=True)
    assert_frame_equal(g1.sort_values("id").drop(columns="g").reset_index(drop=True), expected)
    out["hive_g1_rows"] = len(g1)
    whole.to_csv(f"s3://{bucket}/csv/all.csv.gz", storage_options=options, index=False)
    assert_frame_equal(pd.read_csv(f"s3://{bucket}/csv/all.csv.gz", storage_options=options),
                       whole)

    # Random access: a 12 MiB file written in 5 MiB blocks (a multipart upload).
    data = random.Random(7).randbytes(12 * MiB)
    with fs.open(f"{bucket}/raw/big.bin", "wb", block_size=5 * MiB) as f:
        for start in range(0, len(data), MiB):
            f.write(data[start:start + MiB])
    out["big_sha256"] = hashlib.sha256(data).hexdigest()
    reads = []
    with fs.open(f"{bucket}/raw/big.bin", "rb", block_size=MiB) as f:
        for offset, length in ((0, 100), (5 * MiB - 7, 20), (11 * MiB, 4096),
                               (len(data) - 10, 100), (3 * MiB + 1, 2 * MiB)):
            f.seek(offset)
            reads.append(f.read(length) == data[offset:offset + length])
        f.seek(-16, 2)
        reads.append(f.tell() == len(data) - 16 and f.read() == data[-16:])
    reads.append(fs.cat_file(f"{bucket}/raw/big.bin", start=MiB, end=MiB + 10)
                 == data[MiB:MiB + 10])
    reads.append(fs.read_block(f"{bucket}/raw/big.bin", 6 * MiB, 1000) == data[6 * MiB:][:1000])
    out["ranges_ok"] = reads
    info = fs.info(f"{bucket}/raw/big.bin")
    out["big_info"] = {"size": info["size"], "type": info["type"], "etag": info["ETag"]}

    # Listing, globbing, copy/move and removal.
    fs.pipe(f"{bucket}/tree/a/1.txt", b"one")
    fs.pipe({f"{bucket}/tree/a/2.txt": b"two", f"{bucket}/tree/b/3.txt": b"three"})
    fs.invalidate_cache()
    out["ls"] = sorted(fs.ls(f"{bucket}/tree"))
    out["ls_detail"] = sorted((e["name"], e["type"]) for e in fs.ls(f"{bucket}/tree",
                                                                      detail=True))
    out["glob_parquet"] = sorted(fs.glob(f"{bucket}/pandas/*.parquet"))
    out["glob_deep"] = sorted(fs.glob(f"{bucket}/tree/**/*.txt"))
    out["find"] = sorted(fs.find(f"{bucket}/tree"))
    out["du"] = fs.du(f"{bucket}/tree")
    out["isdir"] = [fs.isdir(f"{bucket}/tree/a"), fs.isdir(f"{bucket}/tree/a/1.txt")]
    fs.cp(f"{bucket}/tree/a", f"{bucket}/tree/c", recursive=True)
    fs.mv(f"{bucket}/tree/b/3.txt", f"{bucket}/tree/c/3.txt")
    fs.invalidate_cache()
    out["after_cp_mv"] = sorted(fs.find(f"{bucket}/tree"))
    out["cat"] = fs.cat_file(f"{bucket}/tree/c/3.txt").decode()
    fs.rm(f"{bucket}/tree/a/1.txt")
    fs.rm(f"{bucket}/tree", recursive=True)
    fs.rm(f"{bucket}/csv", recursive=True)
    fs.invalidate_cache()
    out["after_rm"] = {"tree": fs.exists(f"{bucket}/tree"),
                       "file": fs.exists(f"{bucket}/tree/c/3.txt"),
                       "top": sorted(fs.ls(bucket))}
    return out


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:3])))
