"""boto3 against a real kurastore server: versioning as a user relies on it (versions,
delete markers, listing them, the "null" version of a suspended bucket, copies and
multipart uploads into versions, deleting versions in bulk) and Object Lock."""

from __future__ import annotations

import datetime
import json

import pytest
from botocore.exceptions import ClientError
from support.s3client import error_code

pytestmark = pytest.mark.clients


def _enable(s3, bucket: str, status: str = "Enabled") -> None:
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": status})


def test_versions_and_delete_markers(s3, bucket: str) -> None:
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    _enable(s3, bucket)
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    ids = [s3.put_object(Bucket=bucket, Key="k", Body=body)["VersionId"]
           for body in (b"one", b"two")]
    assert len(set(ids)) == 2 and "null" not in ids
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"
    old = s3.get_object(Bucket=bucket, Key="k", VersionId=ids[0])
    assert old["Body"].read() == b"one" and old["VersionId"] == ids[0]
    assert s3.head_object(Bucket=bucket, Key="k", VersionId=ids[0])["ContentLength"] == 3

    deleted = s3.delete_object(Bucket=bucket, Key="k")
    assert deleted["DeleteMarker"] is True
    marker = deleted["VersionId"]
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="k")
    assert error_code(err.value) == "NoSuchKey"
    headers = err.value.response["ResponseMetadata"]["HTTPHeaders"]
    assert headers["x-amz-delete-marker"] == "true" and headers["x-amz-version-id"] == marker
    with pytest.raises(ClientError) as err:  # a version id naming a delete marker
        s3.head_object(Bucket=bucket, Key="k", VersionId=marker)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 405

    listing = s3.list_object_versions(Bucket=bucket)
    assert [m["VersionId"] for m in listing["DeleteMarkers"]] == [marker]
    assert listing["DeleteMarkers"][0]["IsLatest"] is True
    assert [v["VersionId"] for v in listing["Versions"]] == ids[::-1]
    assert not any(v["IsLatest"] for v in listing["Versions"])

    # Removing the marker brings the newest version back.
    removed = s3.delete_object(Bucket=bucket, Key="k", VersionId=marker)
    assert removed["DeleteMarker"] is True and removed["VersionId"] == marker
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"two"
    s3.delete_object(Bucket=bucket, Key="k", VersionId=ids[1])
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"one"
    with pytest.raises(ClientError) as err:
        s3.get_object(Bucket=bucket, Key="k", VersionId=ids[1])
    assert error_code(err.value) == "NoSuchVersion"


def test_list_object_versions_pages_with_markers(s3, bucket: str) -> None:
    _enable(s3, bucket)
    made = []
    for key in ("a", "b/1", "b/2", "c"):
        for n in range(3):
            made.append((key, s3.put_object(Bucket=bucket, Key=key, Body=b"%d" % n)["VersionId"]))
    seen, kwargs = [], {}
    while True:
        page = s3.list_object_versions(Bucket=bucket, MaxKeys=4, **kwargs)
        seen += [(v["Key"], v["VersionId"]) for v in page.get("Versions", [])]
        if not page["IsTruncated"]:
            break
        kwargs = {"KeyMarker": page["NextKeyMarker"],
                  "VersionIdMarker": page["NextVersionIdMarker"]}
    expected = [(k, v) for key in ("a", "b/1", "b/2", "c")
                for k, v in reversed([m for m in made if m[0] == key])]
    assert seen == expected
    grouped = s3.list_object_versions(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in grouped["CommonPrefixes"]] == ["b/"]
    assert {v["Key"] for v in grouped["Versions"]} == {"a", "c"}
    only_b = s3.list_object_versions(Bucket=bucket, Prefix="b/")
    assert [v["IsLatest"] for v in only_b["Versions"]] == [True, False, False] * 2


def test_suspended_versioning_keeps_old_versions_and_replaces_null(s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"before")  # the "null" version
    _enable(s3, bucket)
    kept = s3.put_object(Bucket=bucket, Key="k", Body=b"versioned")["VersionId"]
    _enable(s3, bucket, "Suspended")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Suspended"
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"suspended")
    assert "VersionId" not in put  # S3 does not name the null version it writes
    s3.put_object(Bucket=bucket, Key="k", Body=b"again")
    versions = s3.list_object_versions(Bucket=bucket)["Versions"]
    assert [(v["VersionId"], v["IsLatest"]) for v in versions] == [("null", True), (kept, False)]
    assert s3.get_object(Bucket=bucket, Key="k", VersionId="null")["Body"].read() == b"again"
    # A delete now leaves a "null" delete marker in place of the null version.
    gone = s3.delete_object(Bucket=bucket, Key="k")
    assert gone["DeleteMarker"] is True and gone["VersionId"] == "null"
    listing = s3.list_object_versions(Bucket=bucket)
    assert [m["VersionId"] for m in listing["DeleteMarkers"]] == ["null"]
    assert [v["VersionId"] for v in listing["Versions"]] == [kept]


def test_copy_from_a_version_and_multipart_into_a_version(s3, bucket: str) -> None:
    _enable(s3, bucket)
    first = s3.put_object(Bucket=bucket, Key="src", Body=b"first")["VersionId"]
    s3.put_object(Bucket=bucket, Key="src", Body=b"second")
    copied = s3.copy_object(Bucket=bucket, Key="dst",
                            CopySource={"Bucket": bucket, "Key": "src", "VersionId": first})
    assert copied["CopySourceVersionId"] == first and copied["VersionId"] != first
    assert s3.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"first"

    upload = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    part = s3.upload_part(Bucket=bucket, Key="dst", UploadId=upload, PartNumber=1, Body=b"mp")
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="dst", UploadId=upload,
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]})
    assert done["VersionId"] not in ("", "null", copied["VersionId"])
    versions = s3.list_object_versions(Bucket=bucket, Prefix="dst")["Versions"]
    assert [v["VersionId"] for v in versions] == [done["VersionId"], copied["VersionId"]]


def test_delete_objects_with_versions(s3, bucket: str) -> None:
    _enable(s3, bucket)
    ids = [s3.put_object(Bucket=bucket, Key="k", Body=b"%d" % n)["VersionId"] for n in range(3)]
    answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "k", "VersionId": ids[0]}, {"Key": "k", "VersionId": ids[1]}, {"Key": "other"},
    ]})
    deleted = {(d["Key"], d.get("VersionId")) for d in answer["Deleted"]}
    assert deleted == {("k", ids[0]), ("k", ids[1]), ("other", None)}
    marker = next(d for d in answer["Deleted"] if d["Key"] == "other")
    assert marker["DeleteMarker"] is True and marker["DeleteMarkerVersionId"]
    versions = s3.list_object_versions(Bucket=bucket)
    assert [v["VersionId"] for v in versions["Versions"]] == [ids[2]]
    # Deleting the marker by its version id says it was one.
    marker_id = marker["DeleteMarkerVersionId"]
    again = s3.delete_objects(Bucket=bucket, Delete={"Objects": [
        {"Key": "other", "VersionId": marker_id}]})["Deleted"][0]
    assert again["DeleteMarker"] is True and again["DeleteMarkerVersionId"] == marker_id
    assert "DeleteMarkers" not in s3.list_object_versions(Bucket=bucket)


def test_mfa_delete_is_refused_and_versioning_xml_is_checked(s3, bucket: str) -> None:
    with pytest.raises(ClientError) as err:
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={
            "Status": "Enabled", "MFADelete": "Enabled"})
    assert error_code(err.value) == "AccessDenied"
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)


def test_object_lock_retention_and_legal_hold(s3, bucket: str) -> None:
    locked = bucket + "-lock"
    s3.create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
    try:
        assert s3.get_bucket_versioning(Bucket=locked)["Status"] == "Enabled"
        with pytest.raises(ClientError) as err:
            _enable(s3, locked, "Suspended")
        assert error_code(err.value) == "InvalidBucketState"
        config = {"ObjectLockEnabled": "Enabled",
                  "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}}
        s3.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration=config)
        assert s3.get_object_lock_configuration(Bucket=locked)["ObjectLockConfiguration"] == config
        vid = s3.put_object(Bucket=locked, Key="k", Body=b"x")["VersionId"]
        head = s3.head_object(Bucket=locked, Key="k")
        assert head["ObjectLockMode"] == "GOVERNANCE"
        assert head["ObjectLockRetainUntilDate"] > datetime.datetime.now(datetime.UTC)
        with pytest.raises(ClientError) as err:
            s3.delete_object(Bucket=locked, Key="k", VersionId=vid)
        assert error_code(err.value) == "AccessDenied"
        # A delete marker is allowed: the lock protects versions, not keys.
        marker = s3.delete_object(Bucket=locked, Key="k")["VersionId"]
        s3.delete_object(Bucket=locked, Key="k", VersionId=marker)
        s3.put_object_legal_hold(Bucket=locked, Key="k", LegalHold={"Status": "ON"})
        assert s3.get_object_legal_hold(Bucket=locked, Key="k")["LegalHold"] == {"Status": "ON"}
        with pytest.raises(ClientError) as err:  # bypass does not lift a legal hold
            s3.delete_object(Bucket=locked, Key="k", VersionId=vid, BypassGovernanceRetention=True)
        assert error_code(err.value) == "AccessDenied"
        batch = s3.delete_objects(Bucket=locked, BypassGovernanceRetention=True,
                                  Delete={"Objects": [{"Key": "k", "VersionId": vid}]})
        assert [(e["Key"], e["Code"]) for e in batch["Errors"]] == [("k", "AccessDenied")]
        assert "Deleted" not in batch
        s3.put_object_legal_hold(Bucket=locked, Key="k", LegalHold={"Status": "OFF"})
        s3.delete_object(Bucket=locked, Key="k", VersionId=vid, BypassGovernanceRetention=True)
        assert "Versions" not in s3.list_object_versions(Bucket=locked)
    finally:
        s3.delete_bucket(Bucket=locked)
    with pytest.raises(ClientError) as err:  # retention needs a bucket with Object Lock
        s3.put_object(Bucket=bucket, Key="k", Body=b"x", ObjectLockMode="GOVERNANCE",
                      ObjectLockRetainUntilDate=datetime.datetime(2100, 1, 1))
    assert error_code(err.value) == "InvalidRequest"


def test_an_empty_retention_removes_governance_with_bypass_only(s3, bucket: str) -> None:
    # `aws s3api put-object-retention --retention '{}' --bypass-governance-retention`.
    locked = bucket + "-unlock"
    s3.create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
    # The COMPLIANCE version (and so this bucket) stays until its date: a day.
    until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    gov = s3.put_object(Bucket=locked, Key="gov", Body=b"g", ObjectLockMode="GOVERNANCE",
                        ObjectLockRetainUntilDate=until)["VersionId"]
    comp = s3.put_object(Bucket=locked, Key="comp", Body=b"c", ObjectLockMode="COMPLIANCE",
                         ObjectLockRetainUntilDate=until)["VersionId"]
    for key, vid, bypass in (("gov", gov, False), ("comp", comp, True)):
        with pytest.raises(ClientError) as err:
            s3.put_object_retention(Bucket=locked, Key=key, VersionId=vid, Retention={},
                                    BypassGovernanceRetention=bypass)
        assert error_code(err.value) == "AccessDenied"
        assert s3.get_object_retention(Bucket=locked, Key=key, VersionId=vid)["Retention"]
    s3.put_object_retention(Bucket=locked, Key="gov", VersionId=gov, Retention={},
                            BypassGovernanceRetention=True)
    with pytest.raises(ClientError) as err:
        s3.get_object_retention(Bucket=locked, Key="gov", VersionId=gov)
    assert error_code(err.value) == "NoSuchObjectLockConfiguration"
    s3.delete_object(Bucket=locked, Key="gov", VersionId=gov)  # unprotected now
    with pytest.raises(ClientError) as err:  # half a retention is no retention
        s3.put_object_retention(Bucket=locked, Key="comp", VersionId=comp,
                                Retention={"Mode": "GOVERNANCE"})
    assert error_code(err.value) == "MalformedXML"


def test_bypassing_governance_needs_the_permission(s3, bucket: str, other) -> None:
    # x-amz-bypass-governance-retention counts only with s3:BypassGovernanceRetention:
    # another user granted deletes but not that, and an owner the policy denies it to,
    # are refused; a policy Allow gives it to the other user.
    locked = bucket + "-bypass"
    s3.create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
    until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    vids = [s3.put_object(Bucket=locked, Key=f"k{i}", Body=b"x", ObjectLockMode="GOVERNANCE",
                          ObjectLockRetainUntilDate=until)["VersionId"] for i in range(3)]
    objects = f"arn:aws:s3:::{locked}/*"

    def grant(*statements: dict) -> None:
        s3.put_bucket_policy(Bucket=locked, Policy=json.dumps({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": [other["id"]]},
             "Action": ["s3:DeleteObjectVersion", "s3:PutObjectRetention"],
             "Resource": objects}, *statements]}))

    def refused(call, **kwargs) -> None:
        with pytest.raises(ClientError) as err:
            call(Bucket=locked, BypassGovernanceRetention=True, **kwargs)
        assert error_code(err.value) == "AccessDenied"

    grant()
    theirs = other["client"]
    refused(theirs.delete_object, Key="k0", VersionId=vids[0])
    refused(theirs.put_object_retention, Key="k0", VersionId=vids[0], Retention={})
    batch = theirs.delete_objects(Bucket=locked, BypassGovernanceRetention=True,
                                  Delete={"Objects": [{"Key": "k0", "VersionId": vids[0]}]})
    assert [(e["Key"], e["Code"]) for e in batch["Errors"]] == [("k0", "AccessDenied")]

    grant({"Effect": "Deny", "Principal": "*", "Action": "s3:BypassGovernanceRetention",
           "Resource": f"arn:aws:s3:::{locked}/k1"})
    refused(s3.delete_object, Key="k1", VersionId=vids[1])  # the owner, denied by policy
    s3.delete_object(Bucket=locked, Key="k2", VersionId=vids[2], BypassGovernanceRetention=True)

    grant({"Effect": "Allow", "Principal": {"AWS": [other["id"]]},
           "Action": "s3:BypassGovernanceRetention", "Resource": objects})
    theirs.put_object_retention(Bucket=locked, Key="k1", VersionId=vids[1], Retention={},
                                BypassGovernanceRetention=True)
    theirs.delete_object(Bucket=locked, Key="k0", VersionId=vids[0],
                         BypassGovernanceRetention=True)
    s3.delete_object(Bucket=locked, Key="k1", VersionId=vids[1])  # its retention is gone
    assert "Versions" not in s3.list_object_versions(Bucket=locked)
    s3.delete_bucket_policy(Bucket=locked)
    s3.delete_bucket(Bucket=locked)
