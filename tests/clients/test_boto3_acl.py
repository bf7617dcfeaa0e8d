"""Access control against a real `kurastore server`, as clients see it: canned
ACLs and explicit grants on buckets and objects, anonymous requests (botocore
UNSIGNED and raw urllib/sockets), bucket policies, PublicAccessBlock, Object
Ownership, and Swift's public containers (X-Container-Read: .r:*).

The second user is made with the admin CLI, as an operator would.
"""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
import uuid
from urllib.parse import urlsplit

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from support.cluster import ACCESS_KEY, REGION, SECRET_KEY
from support.s3client import error_code

ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTH_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"


@pytest.fixture(scope="module")
def anon(server):
    return boto3.client("s3", endpoint_url=server.endpoint, region_name=REGION,
                        config=Config(signature_version=UNSIGNED,
                                      retries={"max_attempts": 1, "mode": "standard"}))


def denied(call, *args, **kwargs) -> None:
    with pytest.raises(ClientError) as err:
        call(*args, **kwargs)
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error_code(err.value) in ("AccessDenied", "403")


def raw(method: str, url: str, data: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_canned_bucket_acls_answer_and_enforce(server, s3, bucket, other, anon) -> None:
    s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    me = s3.get_bucket_acl(Bucket=bucket)["Owner"]
    denied(anon.list_objects_v2, Bucket=bucket)
    denied(other["client"].list_objects_v2, Bucket=bucket)

    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    grants = s3.get_bucket_acl(Bucket=bucket)["Grants"]
    assert grants == [
        {"Grantee": {"Type": "Group", "URI": ALL_USERS}, "Permission": "READ"},
        {"Grantee": {**me, "Type": "CanonicalUser"}, "Permission": "FULL_CONTROL"},
    ]
    assert [o["Key"] for o in anon.list_objects_v2(Bucket=bucket)["Contents"]] == ["k"]
    status, body = raw("GET", f"{server.endpoint}/{bucket}?list-type=2")
    assert status == 200 and b"<Key>k</Key>" in body
    denied(anon.get_object, Bucket=bucket, Key="k")  # the object itself stays private
    denied(anon.put_object, Bucket=bucket, Key="new", Body=b"x")

    s3.put_bucket_acl(Bucket=bucket, ACL="authenticated-read")
    denied(anon.list_objects_v2, Bucket=bucket)
    assert other["client"].list_objects_v2(Bucket=bucket)["KeyCount"] == 1

    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    anon.put_object(Bucket=bucket, Key="from-anon", Body=b"hello")
    assert s3.get_object(Bucket=bucket, Key="from-anon")["Body"].read() == b"hello"
    status, _ = raw("PUT", f"{server.endpoint}/{bucket}/raw-anon", b"raw")
    assert status == 200
    s3.put_bucket_acl(Bucket=bucket, ACL="private")
    status, body = raw("PUT", f"{server.endpoint}/{bucket}/raw-anon2", b"raw")
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    denied(other["client"].list_objects_v2, Bucket=bucket)


def test_object_acls_and_grants(server, s3, bucket, other, anon) -> None:
    s3.put_object(Bucket=bucket, Key="pub", Body=b"public", ACL="public-read")
    s3.put_object(Bucket=bucket, Key="priv", Body=b"private")
    assert anon.get_object(Bucket=bucket, Key="pub")["Body"].read() == b"public"
    status, body = raw("GET", f"{server.endpoint}/{bucket}/pub")
    assert (status, body) == (200, b"public")
    denied(anon.get_object, Bucket=bucket, Key="priv")
    denied(anon.get_object, Bucket=bucket, Key="missing")  # no listing right: no 404 either
    denied(other["client"].get_object, Bucket=bucket, Key="priv")
    denied(other["client"].get_object_acl, Bucket=bucket, Key="pub")

    # Each x-amz-grant-* kind, to the other user by canonical id.
    s3.put_object_acl(Bucket=bucket, Key="priv", GrantRead=f'id="{other["id"]}"')
    grants = s3.get_object_acl(Bucket=bucket, Key="priv")["Grants"]
    assert grants == [{"Grantee": {"ID": other["id"], "DisplayName": other["name"],
                                   "Type": "CanonicalUser"}, "Permission": "READ"}]
    assert other["client"].get_object(Bucket=bucket, Key="priv")["Body"].read() == b"private"
    denied(other["client"].get_object_acl, Bucket=bucket, Key="priv")
    s3.put_object_acl(Bucket=bucket, Key="priv", GrantReadACP=f"id={other['id']}")
    assert other["client"].get_object_acl(Bucket=bucket, Key="priv")["Grants"][0][
        "Permission"] == "READ_ACP"
    denied(other["client"].get_object, Bucket=bucket, Key="priv")  # READ was replaced
    denied(other["client"].put_object_acl, Bucket=bucket, Key="priv", ACL="public-read")
    s3.put_object_acl(Bucket=bucket, Key="priv", GrantWriteACP=f"id={other['id']}")
    other["client"].put_object_acl(Bucket=bucket, Key="priv", ACL="public-read")
    assert anon.get_object(Bucket=bucket, Key="priv")["Body"].read() == b"private"
    s3.put_object_acl(Bucket=bucket, Key="priv", GrantFullControl=f"uri={AUTH_USERS}")
    denied(anon.get_object, Bucket=bucket, Key="priv")
    assert other["client"].get_object(Bucket=bucket, Key="priv")["Body"].read() == b"private"

    # A grant to a user that does not exist, both ACL forms, an unknown e-mail.
    with pytest.raises(ClientError) as err:
        s3.put_object_acl(Bucket=bucket, Key="priv", GrantRead="id=nobody")
    assert error_code(err.value) == "InvalidArgument"
    with pytest.raises(ClientError) as err:
        s3.put_object_acl(Bucket=bucket, Key="priv", ACL="private", GrantRead="id=x")
    assert error_code(err.value) == "InvalidRequest"
    with pytest.raises(ClientError) as err:
        s3.put_object_acl(Bucket=bucket, Key="priv", GrantRead="emailAddress=a@example.com")
    assert error_code(err.value) == "UnresolvableGrantByEmailAddress"

    # The AccessControlPolicy document, and the object's data and mtime unchanged.
    before = s3.head_object(Bucket=bucket, Key="pub")
    policy = s3.get_object_acl(Bucket=bucket, Key="pub")
    policy["Grants"].append({"Grantee": {"ID": other["id"], "Type": "CanonicalUser"},
                             "Permission": "WRITE_ACP"})
    s3.put_object_acl(Bucket=bucket, Key="pub", AccessControlPolicy={
        "Owner": policy["Owner"], "Grants": policy["Grants"]})
    perms = sorted(g["Permission"] for g in s3.get_object_acl(Bucket=bucket, Key="pub")["Grants"])
    assert perms == ["FULL_CONTROL", "READ", "WRITE_ACP"]
    after = s3.head_object(Bucket=bucket, Key="pub")
    assert (after["ETag"], after["LastModified"]) == (before["ETag"], before["LastModified"])
    assert "x-kurastore-acl" not in after["ResponseMetadata"]["HTTPHeaders"]


def test_writes_by_another_user_and_copies(s3, bucket, other) -> None:
    s3.put_bucket_acl(Bucket=bucket, GrantWrite=f"id={other['id']}",
                      GrantRead=f"id={other['id']}")
    client = other["client"]
    client.put_object(Bucket=bucket, Key="theirs", Body=b"t", ACL="bucket-owner-full-control")
    acl = s3.get_object_acl(Bucket=bucket, Key="theirs")
    assert acl["Owner"]["ID"] == other["id"]
    assert len(acl["Grants"]) == 2
    # A copy gets the ACL its request names, never the source's.
    s3.put_object(Bucket=bucket, Key="src", Body=b"s", ACL="public-read")
    s3.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    assert len(s3.get_object_acl(Bucket=bucket, Key="dst")["Grants"]) == 1
    s3.copy_object(Bucket=bucket, Key="dst2", CopySource={"Bucket": bucket, "Key": "dst"},
                   ACL="public-read")
    assert len(s3.get_object_acl(Bucket=bucket, Key="dst2")["Grants"]) == 2
    # The other user may write the bucket but not read a private object by copying it.
    with pytest.raises(ClientError) as err:
        client.copy_object(Bucket=bucket, Key="stolen", CopySource={"Bucket": bucket,
                                                                     "Key": "dst"})
    assert error_code(err.value) == "AccessDenied"
    client.copy_object(Bucket=bucket, Key="fine", CopySource={"Bucket": bucket, "Key": "src"})


def test_expected_bucket_owner(s3, bucket, other) -> None:
    me = s3.get_bucket_acl(Bucket=bucket)["Owner"]["ID"]
    s3.list_objects_v2(Bucket=bucket, ExpectedBucketOwner=me)
    denied(s3.list_objects_v2, Bucket=bucket, ExpectedBucketOwner=other["id"])
    denied(s3.put_object, Bucket=bucket, Key="k", Body=b"x", ExpectedBucketOwner="0" * 64)


def test_anonymous_put_waits_for_100_continue(server, s3, bucket) -> None:
    """A client that waits for "100 Continue" hears 403 first, before sending a byte."""
    host, port = urlsplit(server.endpoint).hostname, urlsplit(server.endpoint).port

    def first_status() -> str:
        with socket.create_connection((host, port), timeout=10) as sock:
            sock.sendall(f"PUT /{bucket}/obj HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n"
                         "Expect: 100-continue\r\n\r\n".encode())
            return sock.recv(1024).decode().split(" ")[1]

    assert first_status() == "403"
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read-write")
    assert first_status() == "100"


def test_bucket_policy_allow_deny_and_status(server, s3, bucket, other, anon) -> None:
    s3.put_object(Bucket=bucket, Key="docs/a", Body=b"a")
    s3.put_object(Bucket=bucket, Key="secret/b", Body=b"b")
    with pytest.raises(ClientError) as err:
        s3.get_bucket_policy(Bucket=bucket)
    assert error_code(err.value) == "NoSuchBucketPolicy"
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is False
    policy = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{bucket}/docs/*"},
        {"Effect": "Allow", "Principal": {"AWS": [other["id"]]}, "Action": "s3:ListBucket",
         "Resource": f"arn:aws:s3:::{bucket}",
         "Condition": {"StringLike": {"s3:prefix": "docs/*"}}},
        {"Effect": "Deny", "Principal": "*", "Action": "s3:*",
         "Resource": f"arn:aws:s3:::{bucket}/secret/*"},
    ]})  # fmt: skip
    s3.put_bucket_policy(Bucket=bucket, Policy=policy)
    assert s3.get_bucket_policy(Bucket=bucket)["Policy"] == policy
    assert s3.get_bucket_policy_status(Bucket=bucket)["PolicyStatus"]["IsPublic"] is True
    assert anon.get_object(Bucket=bucket, Key="docs/a")["Body"].read() == b"a"
    assert raw("GET", f"{server.endpoint}/{bucket}/docs/a") == (200, b"a")
    denied(anon.list_objects_v2, Bucket=bucket)
    listed = other["client"].list_objects_v2(Bucket=bucket, Prefix="docs/")
    assert [o["Key"] for o in listed["Contents"]] == ["docs/a"]
    denied(other["client"].list_objects_v2, Bucket=bucket, Prefix="secret/")
    denied(s3.get_object, Bucket=bucket, Key="secret/b")  # Deny binds the owner too
    result = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "secret/b"}]})
    assert [e["Code"] for e in result["Errors"]] == ["AccessDenied"]  # judged key by key
    s3.delete_bucket_policy(Bucket=bucket)
    assert s3.get_object(Bucket=bucket, Key="secret/b")["Body"].read() == b"b"
    denied(anon.get_object, Bucket=bucket, Key="docs/a")
    for bad in ("not json", json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*",
                                                       "Action": "s3:GetObject",
                                                       "Resource": "arn:aws:s3:::other/*"}]})):
        with pytest.raises(ClientError) as err:
            s3.put_bucket_policy(Bucket=bucket, Policy=bad)
        assert error_code(err.value) == "MalformedPolicy"


def test_public_access_block(s3, bucket, other) -> None:
    with pytest.raises(ClientError) as err:
        s3.get_public_access_block(Bucket=bucket)
    assert error_code(err.value) == "NoSuchPublicAccessBlockConfiguration"
    s3.put_bucket_acl(Bucket=bucket, ACL="public-read")
    assert other["client"].list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    config = {"BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
              "RestrictPublicBuckets": False}
    s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=config)
    assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == config
    denied(other["client"].list_objects_v2, Bucket=bucket)  # public grants ignored
    denied(s3.put_bucket_acl, Bucket=bucket, ACL="public-read-write")
    denied(s3.put_object, Bucket=bucket, Key="k", Body=b"", ACL="public-read")
    public = json.dumps({"Statement": [{"Effect": "Allow", "Principal": "*",
                                        "Action": "s3:GetObject",
                                        "Resource": f"arn:aws:s3:::{bucket}/*"}]})
    denied(s3.put_bucket_policy, Bucket=bucket, Policy=public)
    s3.delete_public_access_block(Bucket=bucket)
    assert other["client"].list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_object_ownership_controls(s3, other) -> None:
    name = f"own-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=name, ObjectOwnership="BucketOwnerEnforced")
    try:
        me = s3.get_bucket_acl(Bucket=name)["Owner"]["ID"]
        rules = s3.get_bucket_ownership_controls(Bucket=name)["OwnershipControls"]["Rules"]
        assert rules == [{"ObjectOwnership": "BucketOwnerEnforced"}]
        s3.put_bucket_policy(Bucket=name, Policy=json.dumps({"Statement": [{
            "Effect": "Allow", "Principal": {"AWS": [other["id"]]}, "Action": "s3:*",
            "Resource": [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"]}]}))
        other["client"].put_object(Bucket=name, Key="k", Body=b"x")
        assert s3.get_object_acl(Bucket=name, Key="k")["Owner"]["ID"] == me
        with pytest.raises(ClientError) as err:
            other["client"].put_object(Bucket=name, Key="k2", Body=b"x", ACL="public-read")
        assert error_code(err.value) == "AccessControlListNotSupported"
        with pytest.raises(ClientError) as err:
            s3.put_bucket_acl(Bucket=name, ACL="public-read")
        assert error_code(err.value) == "AccessControlListNotSupported"
        s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls={
            "Rules": [{"ObjectOwnership": "ObjectWriter"}]})
        other["client"].put_object(Bucket=name, Key="k3", Body=b"x")
        assert s3.get_object_acl(Bucket=name, Key="k").get("Owner", {}).get("ID") == me
        denied(s3.get_object, Bucket=name, Key="k3")  # the writer owns it, private
        s3.delete_bucket_ownership_controls(Bucket=name)
        with pytest.raises(ClientError) as err:
            s3.get_bucket_ownership_controls(Bucket=name)
        assert error_code(err.value) == "OwnershipControlsNotFoundError"
    finally:
        s3.delete_bucket_policy(Bucket=name)
        for key in ("k", "k3"):
            s3.delete_object(Bucket=name, Key=key)
        s3.delete_bucket(Bucket=name)


def test_swift_public_container(server) -> None:
    req = urllib.request.Request(f"{server.endpoint}/auth/v1.0", headers={
        "X-Auth-User": ACCESS_KEY, "X-Auth-Key": SECRET_KEY})
    with urllib.request.urlopen(req, timeout=20) as resp:
        token, url = resp.headers["X-Auth-Token"], resp.headers["X-Storage-Url"]
    container = f"{url}/pub-{uuid.uuid4().hex[:8]}"

    def call(method: str, target: str, headers: dict[str, str], data: bytes | None = None
             ) -> tuple[int, bytes]:
        request = urllib.request.Request(target, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=20) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    auth = {"X-Auth-Token": token}
    assert call("PUT", container, auth)[0] == 201
    assert call("PUT", f"{container}/o", auth, b"swift data")[0] == 201
    assert call("GET", f"{container}/o", {})[0] == 401
    assert call("POST", container, {**auth, "X-Container-Read": ".r:*"})[0] == 204
    assert call("GET", f"{container}/o", {}) == (200, b"swift data")
    assert call("GET", container, {})[0] == 401  # listing needs .rlistings
    assert call("PUT", f"{container}/o2", {}, b"x")[0] == 401  # reads only
    assert call("POST", container, {**auth, "X-Container-Read": ".r:*,.rlistings"})[0] == 204
    status, body = call("GET", container, {})
    assert status == 200 and body.split() == [b"o"]
    assert call("POST", container, {**auth, "X-Remove-Container-Read": "x"})[0] == 204
    assert call("GET", f"{container}/o", {})[0] == 401
    assert call("DELETE", f"{container}/o", auth)[0] == 204
    assert call("DELETE", container, auth)[0] == 204
