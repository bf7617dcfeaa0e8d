"""Multipart checksum headers as S3 reads them: the type asked for at
CreateMultipartUpload and the whole-object checks CompleteMultipartUpload may carry.

Pure functions over headers and the version about to be committed; no I/O.

Rules (AWS's behaviour):
- x-amz-checksum-type is COMPOSITE or FULL_OBJECT and needs x-amz-checksum-algorithm;
  FULL_OBJECT exists only for the CRCs, and CRC64NVME only as FULL_OBJECT. Anything
  else is InvalidRequest. Without it the default is COMPOSITE (FULL_OBJECT for
  CRC64NVME).
- On Complete, x-amz-checksum-type must name the upload's type (InvalidRequest),
  x-amz-mp-object-size the object's size (InvalidRequest), and an
  x-amz-checksum-<algo> the object's checksum (BadDigest); a COMPOSITE value may be
  sent with or without its "-N" suffix. The check runs before the commit, so a
  refused Complete leaves no object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from kurastore.gateway.objects import checksums
from kurastore.gateway.s3 import errors as s3e
from kurastore.metadata import ObjectVersion

TYPES = ("COMPOSITE", "FULL_OBJECT")


def requested_type(headers: Mapping[str, str], algorithm: str) -> str:
    """The checksum type a CreateMultipartUpload asks for ("" = no checksum)."""
    wanted = headers.get("x-amz-checksum-type", "").strip().upper()
    if not wanted:
        if not algorithm:
            return ""
        return "FULL_OBJECT" if algorithm == "CRC64NVME" else "COMPOSITE"
    if wanted not in TYPES:
        raise s3e.InvalidRequest("Value for x-amz-checksum-type header is invalid.")
    if not algorithm:
        raise s3e.InvalidRequest(
            "The x-amz-checksum-type header can only be used with the "
            "x-amz-checksum-algorithm header."
        )
    if wanted == "FULL_OBJECT" and algorithm not in checksums.CRC_ALGORITHMS:
        raise s3e.InvalidRequest(
            f"The FULL_OBJECT checksum type cannot be used with the {algorithm.lower()} "
            "checksum algorithm."
        )
    if wanted == "COMPOSITE" and algorithm == "CRC64NVME":
        raise s3e.InvalidRequest(
            "The COMPOSITE checksum type cannot be used with the crc64nvme checksum algorithm."
        )
    return wanted


def complete_check(headers: Mapping[str, str]) -> Callable[[ObjectVersion], None]:
    """The check CompleteMultipartUpload's headers ask of the assembled version."""
    wanted_type = headers.get("x-amz-checksum-type", "").strip().upper()
    size_text = headers.get("x-amz-mp-object-size", "").strip()
    if size_text and not size_text.isdigit():
        raise s3e.InvalidRequest("Value for x-amz-mp-object-size header is invalid.")
    sent = {
        algo: value.strip()
        for name, value in headers.items()
        if (algo := checksums.algorithm_from_header(name)) is not None
    }

    def check(version: ObjectVersion) -> None:
        if wanted_type and wanted_type != (version.checksum_type or ""):
            raise s3e.InvalidRequest(
                f"The upload was created using the {(version.checksum_type or 'null').lower()} "
                f"checksum mode. The complete request must use the same checksum mode."
            )
        if size_text and int(size_text) != version.size:
            raise s3e.InvalidRequest(
                f"The provided 'x-amz-mp-object-size' header value {size_text} does not match "
                f"what was computed: {version.size}"
            )
        for algo, value in sent.items():
            have = version.checksums.get(algo)
            if have is None:
                raise s3e.InvalidRequest(
                    f"The upload was created without the {algo.lower()} checksum algorithm."
                )
            if value.split("-", 1)[0] != have.split("-", 1)[0]:
                raise s3e.BadDigest(
                    f"The {algo.lower()} you specified did not match the calculated checksum."
                )

    return check
