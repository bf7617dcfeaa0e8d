"""boto3's S3 waiters against a real kurastore server.

The four waiters poll HeadBucket/HeadObject and decide on the status code: 200 means
"exists", 404 means "not yet" (or "gone"). A change made while a waiter polls must end
the wait; a change that never comes must end in WaiterError after MaxAttempts.
"""

from __future__ import annotations

import re
import threading
import time
import tomllib
import uuid
from collections.abc import Callable
from pathlib import Path

import boto3
import botocore
import pytest
from botocore.exceptions import WaiterError
from packaging.requirements import Requirement

pytestmark = pytest.mark.clients

FAST = {"Delay": 1, "MaxAttempts": 8}
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def later(seconds: float, action: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=lambda: (time.sleep(seconds), action()))
    thread.start()
    return thread


def test_boto3_is_the_declared_version() -> None:
    print("client: boto3", boto3.__version__, "botocore", botocore.__version__)
    deps = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]["test"]
    declared = next(Requirement(d) for d in deps if re.match(r"boto3\b", d))
    assert declared.specifier.contains(boto3.__version__), (declared, boto3.__version__)


def test_bucket_waiters(s3) -> None:
    name = f"wait-{uuid.uuid4().hex[:10]}"
    s3.get_waiter("bucket_not_exists").wait(Bucket=name, WaiterConfig=FAST)
    started = time.monotonic()
    thread = later(1.5, lambda: s3.create_bucket(Bucket=name))
    try:
        s3.get_waiter("bucket_exists").wait(Bucket=name, WaiterConfig=FAST)
        assert time.monotonic() - started >= 1.5  # it really waited for the bucket
        thread.join()
        s3.head_bucket(Bucket=name)

        with pytest.raises(WaiterError) as err:  # the bucket stays: the wait gives up
            s3.get_waiter("bucket_not_exists").wait(Bucket=name,
                                                    WaiterConfig={"Delay": 1, "MaxAttempts": 2})
        assert "Max attempts exceeded" in str(err.value)
        assert err.value.last_response["ResponseMetadata"]["HTTPStatusCode"] == 200

        thread = later(1.5, lambda: s3.delete_bucket(Bucket=name))
        s3.get_waiter("bucket_not_exists").wait(Bucket=name, WaiterConfig=FAST)
        thread.join()
    finally:
        thread.join()
        if name in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
            s3.delete_bucket(Bucket=name)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_object_waiters(s3, bucket: str) -> None:
    key = "waited/for.txt"
    s3.get_waiter("object_not_exists").wait(Bucket=bucket, Key=key, WaiterConfig=FAST)
    with pytest.raises(WaiterError) as err:
        s3.get_waiter("object_exists").wait(Bucket=bucket, Key=key,
                                            WaiterConfig={"Delay": 1, "MaxAttempts": 2})
    assert "Max attempts exceeded" in str(err.value)
    assert err.value.last_response["Error"]["Code"] == "404"

    started = time.monotonic()
    thread = later(1.5, lambda: s3.put_object(Bucket=bucket, Key=key, Body=b"here now"))
    s3.get_waiter("object_exists").wait(Bucket=bucket, Key=key, WaiterConfig=FAST)
    thread.join()
    assert time.monotonic() - started >= 1.5
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"here now"
    # A prefix of an existing key is not an object.
    s3.get_waiter("object_not_exists").wait(Bucket=bucket, Key="waited/for",
                                            WaiterConfig={"Delay": 1, "MaxAttempts": 1})
    s3.get_waiter("object_not_exists").wait(Bucket=bucket, Key="waited/",
                                            WaiterConfig={"Delay": 1, "MaxAttempts": 1})

    thread = later(1.5, lambda: s3.delete_object(Bucket=bucket, Key=key))
    s3.get_waiter("object_not_exists").wait(Bucket=bucket, Key=key, WaiterConfig=FAST)
    thread.join()
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="waited/")
