"""boto3 additional checksums against a real kurastore server: the five algorithms,
single-part and multipart, COMPOSITE and FULL_OBJECT, each value recomputed here
independently (awscrt for the CRCs, hashlib for the SHAs) and compared."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

import boto3
import pytest
from awscrt import checksums as crt
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from support.s3client import error_code

pytestmark = pytest.mark.clients

MiB = 1 << 20
ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")
_CRC = {"CRC32": (crt.crc32, 4), "CRC32C": (crt.crc32c, 4), "CRC64NVME": (crt.crc64nvme, 8)}


def raw_checksum(algorithm: str, data: bytes) -> bytes:
    if algorithm in _CRC:
        fn, size = _CRC[algorithm]
        return fn(data).to_bytes(size, "big")
    return hashlib.new(algorithm.lower(), data).digest()


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def composite(algorithm: str, parts: list[bytes]) -> str:
    joined = b"".join(raw_checksum(algorithm, p) for p in parts)
    return f"{b64(raw_checksum(algorithm, joined))}-{len(parts)}"


def test_client_version() -> None:
    assert boto3.__version__.startswith("1.")  # checksums as of boto3 >= 1.36 (CRC64NVME)
    assert tuple(int(x) for x in boto3.__version__.split(".")[:2]) >= (1, 36)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_single_part_put(s3, bucket: str, algorithm: str) -> None:
    data = os.urandom(300_000)
    put = s3.put_object(Bucket=bucket, Key="one", Body=data, ChecksumAlgorithm=algorithm)
    expected = b64(raw_checksum(algorithm, data))
    assert put[f"Checksum{algorithm}"] == expected
    head = s3.head_object(Bucket=bucket, Key="one", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == expected
    assert head["ChecksumType"] == "FULL_OBJECT"
    got = s3.get_object(Bucket=bucket, Key="one", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got[f"Checksum{algorithm}"] == expected
    plain = s3.head_object(Bucket=bucket, Key="one")
    assert f"Checksum{algorithm}" not in plain


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_transfer_manager_multipart(s3, bucket: str, workdir: Path, algorithm: str) -> None:
    data = os.urandom(12 * MiB)
    src = workdir / "src.bin"
    src.write_bytes(data)
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB)
    s3.upload_file(str(src), bucket, "mp", ExtraArgs={"ChecksumAlgorithm": algorithm},
                   Config=config)
    parts = [data[i:i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
    head = s3.head_object(Bucket=bucket, Key="mp", ChecksumMode="ENABLED")
    assert head["ETag"].endswith('-3"')
    if algorithm == "CRC64NVME":  # FULL_OBJECT only: the CRC of the whole object
        assert head["ChecksumType"] == "FULL_OBJECT"
        assert head[f"Checksum{algorithm}"] == b64(raw_checksum(algorithm, data))
    else:
        assert head["ChecksumType"] == "COMPOSITE"
        assert head[f"Checksum{algorithm}"] == composite(algorithm, parts)
    back = workdir / "back.bin"
    s3.download_file(bucket, "mp", str(back))
    assert back.read_bytes() == data


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME"])
def test_full_object_multipart(s3, bucket: str, algorithm: str) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(5 * MiB + 3), os.urandom(4321)]
    data = b"".join(parts)
    up = s3.create_multipart_upload(Bucket=bucket, Key="full", ChecksumAlgorithm=algorithm,
                                    ChecksumType="FULL_OBJECT")
    assert up["ChecksumType"] == "FULL_OBJECT"
    uid = up["UploadId"]
    done_parts = []
    for n, body in enumerate(parts, start=1):
        resp = s3.upload_part(Bucket=bucket, Key="full", UploadId=uid, PartNumber=n,
                              Body=body, ChecksumAlgorithm=algorithm)
        assert resp[f"Checksum{algorithm}"] == b64(raw_checksum(algorithm, body))
        done_parts.append({"PartNumber": n, "ETag": resp["ETag"],
                           f"Checksum{algorithm}": resp[f"Checksum{algorithm}"]})
    listed = s3.list_parts(Bucket=bucket, Key="full", UploadId=uid)
    assert [p[f"Checksum{algorithm}"] for p in listed["Parts"]] == [
        b64(raw_checksum(algorithm, p)) for p in parts
    ]
    assert listed["ChecksumAlgorithm"] == algorithm
    whole = b64(raw_checksum(algorithm, data))
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="full", UploadId=uid, MultipartUpload={"Parts": done_parts},
        ChecksumType="FULL_OBJECT", MpuObjectSize=len(data), **{f"Checksum{algorithm}": whole},
    )
    assert done[f"Checksum{algorithm}"] == whole
    assert done["ChecksumType"] == "FULL_OBJECT"
    head = s3.head_object(Bucket=bucket, Key="full", ChecksumMode="ENABLED")
    assert (head[f"Checksum{algorithm}"], head["ChecksumType"]) == (whole, "FULL_OBJECT")
    got = s3.get_object(Bucket=bucket, Key="full", ChecksumMode="ENABLED")
    assert got["Body"].read() == data


def test_composite_complete_response_and_wrong_part_checksum(s3, bucket: str) -> None:
    parts = [os.urandom(5 * MiB), os.urandom(777)]
    up = s3.create_multipart_upload(Bucket=bucket, Key="c", ChecksumAlgorithm="SHA256")
    assert up["ChecksumType"] == "COMPOSITE"
    uid = up["UploadId"]
    done_parts = []
    for n, body in enumerate(parts, start=1):
        resp = s3.upload_part(Bucket=bucket, Key="c", UploadId=uid, PartNumber=n, Body=body,
                              ChecksumAlgorithm="SHA256")
        done_parts.append({"PartNumber": n, "ETag": resp["ETag"],
                           "ChecksumSHA256": resp["ChecksumSHA256"]})
    wrong = [dict(done_parts[0]), dict(done_parts[1])]
    wrong[1]["ChecksumSHA256"] = b64(hashlib.sha256(b"other").digest())
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(Bucket=bucket, Key="c", UploadId=uid,
                                     MultipartUpload={"Parts": wrong})
    assert error_code(exc.value) == "InvalidPart"
    done = s3.complete_multipart_upload(Bucket=bucket, Key="c", UploadId=uid,
                                        MultipartUpload={"Parts": done_parts})
    assert done["ChecksumSHA256"] == composite("SHA256", parts)
    assert done["ChecksumType"] == "COMPOSITE"


def test_part_checksum_mismatch_is_refused(s3, bucket: str) -> None:
    up = s3.create_multipart_upload(Bucket=bucket, Key="bad", ChecksumAlgorithm="CRC32C")
    with pytest.raises(ClientError) as exc:
        s3.upload_part(Bucket=bucket, Key="bad", UploadId=up["UploadId"], PartNumber=1,
                       Body=b"abc", ChecksumCRC32C=b64(raw_checksum("CRC32C", b"abd")))
    assert error_code(exc.value) in ("BadDigest", "InvalidRequest")
    assert s3.list_parts(Bucket=bucket, Key="bad", UploadId=up["UploadId"]).get("Parts", []) == []


@pytest.mark.parametrize(("algorithm", "kind"), [("SHA1", "FULL_OBJECT"),
                                                 ("SHA256", "FULL_OBJECT"),
                                                 ("CRC64NVME", "COMPOSITE")])
def test_unsupported_type_is_invalid_request(s3, bucket: str, algorithm: str, kind: str) -> None:
    with pytest.raises(ClientError) as exc:
        s3.create_multipart_upload(Bucket=bucket, Key="x", ChecksumAlgorithm=algorithm,
                                   ChecksumType=kind)
    assert error_code(exc.value) == "InvalidRequest"


def test_wrong_full_object_checksum_on_complete(s3, bucket: str) -> None:
    body = os.urandom(1000)
    up = s3.create_multipart_upload(Bucket=bucket, Key="w", ChecksumAlgorithm="CRC32",
                                    ChecksumType="FULL_OBJECT")
    part = s3.upload_part(Bucket=bucket, Key="w", UploadId=up["UploadId"], PartNumber=1,
                          Body=body, ChecksumAlgorithm="CRC32")
    with pytest.raises(ClientError) as exc:
        s3.complete_multipart_upload(
            Bucket=bucket, Key="w", UploadId=up["UploadId"], ChecksumType="FULL_OBJECT",
            ChecksumCRC32=b64(raw_checksum("CRC32", body + b"x")),
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
        )
    assert error_code(exc.value) == "BadDigest"
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key="w")
