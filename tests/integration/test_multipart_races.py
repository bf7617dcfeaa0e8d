"""Multipart uploads against a real `kurastore server` while clients race them.
An acknowledged CompleteMultipartUpload must read back byte-exact forever, whatever
the client's retries of a part were doing at the time."""

from __future__ import annotations

import os
import threading
import time

import pytest
from support.cluster import ServerProcess
from support.s3client import make_client
from support.shards import StoredShard, disk_shards, pod_dirs

pytestmark = pytest.mark.integration


def shard_files(server: ServerProcess) -> list[StoredShard]:
    return list(disk_shards(pod_dirs(server.data_dir)).values())


def test_complete_racing_retries_of_its_part_keeps_the_object(
    fresh_server: ServerProcess,
) -> None:
    """Found by fault injection: a part uploaded again (same bytes, same ETag) while
    Complete ran replaced the part's record after Complete had read it; the object
    was committed naming the replaced shards, which the collector then deleted: about
    half the acknowledged objects answered 500 (DataLost) a few seconds later."""
    s3 = make_client(fresh_server.endpoint)
    s3.create_bucket(Bucket="races")
    body = os.urandom(200_000)
    completed: list[str] = []
    for trial in range(8):
        key = f"raced-{trial}"
        uid = s3.create_multipart_upload(Bucket="races", Key=key)["UploadId"]
        etag = s3.upload_part(Bucket="races", Key=key, UploadId=uid, PartNumber=1,
                              Body=body)["ETag"]
        stop = threading.Event()

        def retry_part(key: str = key, uid: str = uid, stop: threading.Event = stop) -> None:
            client = make_client(fresh_server.endpoint)
            while not stop.is_set():
                try:
                    client.upload_part(Bucket="races", Key=key, UploadId=uid, PartNumber=1,
                                       Body=body)
                except Exception:
                    return  # NoSuchUpload once Complete committed

        threads = [threading.Thread(target=retry_part) for _ in range(6)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.3)
            s3.complete_multipart_upload(
                Bucket="races", Key=key, UploadId=uid,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
            )  # fmt: skip
            completed.append(key)
        except Exception as exc:  # InvalidPart when retries never let it through: allowed
            assert "InvalidPart" in str(exc), exc
        finally:
            stop.set()
            for t in threads:
                t.join()
    assert completed
    # The collector deletes every replaced part: wait until only one shard per pod per
    # object is left (or give up), then every completed object must still read back.
    deadline = time.monotonic() + 30
    while len(shard_files(fresh_server)) > 6 * len(completed) and time.monotonic() < deadline:
        time.sleep(0.5)
    for key in completed:
        assert s3.get_object(Bucket="races", Key=key)["Body"].read() == body, key
