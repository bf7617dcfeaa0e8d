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
import xxhash
from awscrt import checksums as crt
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from support.s3client import error_code, make_client

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
    head = s3.head_object(Bucket=bucket, Key="c", ChecksumMode="ENABLED")
    assert head["ChecksumSHA256"] == composite("SHA256", parts)  # "...=-2"
    # GetObjectAttributes gives the COMPOSITE value without its part count, as S3 does.
    attrs = s3.get_object_attributes(Bucket=bucket, Key="c",
                                     ObjectAttributes=["Checksum", "ObjectParts"])
    assert attrs["Checksum"]["ChecksumSHA256"] == composite("SHA256", parts).split("-")[0]
    assert attrs["Checksum"]["ChecksumType"] == "COMPOSITE"
    assert attrs["ObjectParts"]["TotalPartsCount"] == 2


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


# The five algorithms AWS added in 2026: boto3 computes all but MD5 itself (through the
# CRT); an MD5 checksum is given as its value.
NEW_ALGORITHMS = {"SHA512": lambda d: hashlib.sha512(d).digest(),
                  "XXHASH64": lambda d: xxhash.xxh64(d).digest(),
                  "XXHASH3": lambda d: xxhash.xxh3_64(d).digest(),
                  "XXHASH128": lambda d: xxhash.xxh3_128(d).digest()}


@pytest.mark.parametrize("algorithm", sorted(NEW_ALGORITHMS))
def test_the_2026_checksums_are_verified_and_stored(s3, bucket: str, algorithm: str) -> None:
    data = os.urandom(70_000)
    expected = b64(NEW_ALGORITHMS[algorithm](data))
    put = s3.put_object(Bucket=bucket, Key="new", Body=data, ChecksumAlgorithm=algorithm)
    assert put[f"Checksum{algorithm}"] == expected
    head = s3.head_object(Bucket=bucket, Key="new", ChecksumMode="ENABLED")
    assert (head[f"Checksum{algorithm}"], head["ChecksumType"]) == (expected, "FULL_OBJECT")
    wrong = b64(NEW_ALGORITHMS[algorithm](b"other bytes"))
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=bucket, Key="new", Body=data, **{f"Checksum{algorithm}": wrong})
    assert error_code(info.value) == "BadDigest"
    assert s3.get_object(Bucket=bucket, Key="new")["Body"].read() == data


def test_md5_checksum_given_as_a_value(s3, bucket: str) -> None:
    data = os.urandom(5000)
    right = b64(hashlib.md5(data).digest())
    s3.put_object(Bucket=bucket, Key="md5", Body=data, ChecksumMD5=right)
    head = s3.head_object(Bucket=bucket, Key="md5", ChecksumMode="ENABLED")
    assert head["ChecksumMD5"] == right
    with pytest.raises(ClientError) as info:
        s3.put_object(Bucket=bucket, Key="md5", Body=data,
                      ChecksumMD5=b64(hashlib.md5(b"x").digest()))
    assert error_code(info.value) == "BadDigest"


def test_objects_written_without_a_checksum_get_a_crc64nvme(server, bucket: str) -> None:
    # As S3 does since 2025: a whole-object CRC64NVME, also for multipart uploads (the
    # parts' CRCs combined) and copies; a copy may ask for another algorithm.
    plain = make_client(server.endpoint, request_checksum_calculation="when_required")
    data = os.urandom(300_000)
    plain.put_object(Bucket=bucket, Key="single", Body=data)
    head = plain.head_object(Bucket=bucket, Key="single", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == b64(raw_checksum("CRC64NVME", data))
    assert head["ChecksumType"] == "FULL_OBJECT"

    parts = [os.urandom(5 * MiB), os.urandom(123_457)]
    uid = plain.create_multipart_upload(Bucket=bucket, Key="multi")["UploadId"]
    etags = [plain.upload_part(Bucket=bucket, Key="multi", UploadId=uid, PartNumber=n,
                               Body=body)["ETag"] for n, body in enumerate(parts, start=1)]
    plain.complete_multipart_upload(Bucket=bucket, Key="multi", UploadId=uid, MultipartUpload={
        "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, start=1)]})
    whole = b"".join(parts)
    head = plain.head_object(Bucket=bucket, Key="multi", ChecksumMode="ENABLED")
    assert head["ChecksumCRC64NVME"] == b64(raw_checksum("CRC64NVME", whole))
    assert head["ChecksumType"] == "FULL_OBJECT"

    source = {"Bucket": bucket, "Key": "multi"}
    copied = plain.copy_object(Bucket=bucket, Key="copy", CopySource=source)
    assert copied["CopyObjectResult"]["ChecksumCRC64NVME"] == head["ChecksumCRC64NVME"]
    asked = plain.copy_object(Bucket=bucket, Key="copy256", CopySource=source,
                              ChecksumAlgorithm="SHA256")["CopyObjectResult"]
    assert asked["ChecksumSHA256"] == b64(hashlib.sha256(whole).digest())
    assert asked["ChecksumType"] == "FULL_OBJECT"
    assert plain.get_object(Bucket=bucket, Key="copy256")["Body"].read() == whole
