"""classify: a table of (method, path, query, headers) -> (S3Op, bucket, key)."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from kurastore.gateway.s3.errors import InvalidURI
from kurastore.gateway.s3.routes import S3Op, classify

DOMAIN = "s3.example.test"

CASES = [
    # service
    ("GET", "/", {}, {}, (S3Op.LIST_BUCKETS, "", "")),
    ("PUT", "/", {}, {}, (S3Op.UNKNOWN, "", "")),
    # buckets, path-style
    ("PUT", "/bkt", {}, {}, (S3Op.CREATE_BUCKET, "bkt", "")),
    ("PUT", "/bkt/", {}, {}, (S3Op.CREATE_BUCKET, "bkt", "")),
    ("HEAD", "/bkt", {}, {}, (S3Op.HEAD_BUCKET, "bkt", "")),
    ("DELETE", "/bkt", {}, {}, (S3Op.DELETE_BUCKET, "bkt", "")),
    ("GET", "/bkt", {}, {}, (S3Op.LIST_OBJECTS, "bkt", "")),
    ("GET", "/bkt", {"list-type": "2"}, {}, (S3Op.LIST_OBJECTS_V2, "bkt", "")),
    ("GET", "/bkt", {"location": ""}, {}, (S3Op.GET_BUCKET_LOCATION, "bkt", "")),
    ("GET", "/bkt", {"versions": ""}, {}, (S3Op.LIST_OBJECT_VERSIONS, "bkt", "")),
    ("GET", "/bkt", {"uploads": ""}, {}, (S3Op.LIST_MULTIPART_UPLOADS, "bkt", "")),
    ("GET", "/bkt", {"versioning": ""}, {}, (S3Op.GET_BUCKET_VERSIONING, "bkt", "")),
    ("PUT", "/bkt", {"versioning": ""}, {}, (S3Op.PUT_BUCKET_VERSIONING, "bkt", "")),
    ("GET", "/bkt", {"acl": ""}, {}, (S3Op.GET_BUCKET_ACL, "bkt", "")),
    ("PUT", "/bkt", {"acl": ""}, {}, (S3Op.PUT_BUCKET_ACL, "bkt", "")),
    ("GET", "/bkt", {"tagging": ""}, {}, (S3Op.GET_BUCKET_TAGGING, "bkt", "")),
    ("DELETE", "/bkt", {"tagging": ""}, {}, (S3Op.DELETE_BUCKET_TAGGING, "bkt", "")),
    ("GET", "/bkt", {"policy": ""}, {}, (S3Op.GET_BUCKET_POLICY, "bkt", "")),
    ("GET", "/bkt", {"cors": ""}, {}, (S3Op.GET_BUCKET_CORS, "bkt", "")),
    ("GET", "/bkt", {"lifecycle": ""}, {}, (S3Op.GET_BUCKET_LIFECYCLE, "bkt", "")),
    ("GET", "/bkt", {"requestPayment": ""}, {}, (S3Op.GET_BUCKET_REQUEST_PAYMENT, "bkt", "")),
    ("POST", "/bkt", {"delete": ""}, {}, (S3Op.DELETE_OBJECTS, "bkt", "")),
    ("POST", "/bkt", {}, {}, (S3Op.POST_OBJECT, "bkt", "")),
    # recognised, unsupported bucket sub-resources never become CreateBucket & co.
    ("PUT", "/bkt", {"policy": ""}, {}, (S3Op.PUT_BUCKET_POLICY, "bkt", "")),
    ("GET", "/bkt", {"policyStatus": ""}, {}, (S3Op.GET_BUCKET_POLICY_STATUS, "bkt", "")),
    ("DELETE", "/bkt", {"policy": ""}, {}, (S3Op.DELETE_BUCKET_POLICY, "bkt", "")),
    ("GET", "/bkt", {"logging": ""}, {}, (S3Op.GET_BUCKET_LOGGING, "bkt", "")),
    ("PUT", "/bkt", {"logging": ""}, {}, (S3Op.PUT_BUCKET_LOGGING, "bkt", "")),
    ("PUT", "/bkt", {"website": ""}, {}, (S3Op.BUCKET_SUBRESOURCE, "bkt", "")),
    ("PUT", "/bkt", {"analytics": "", "id": "a"}, {}, (S3Op.BUCKET_SUBRESOURCE, "bkt", "")),
    # features not offered, answered as for a bucket that never configured them
    ("GET", "/bkt", {"website": ""}, {}, (S3Op.GET_BUCKET_WEBSITE, "bkt", "")),
    ("DELETE", "/bkt", {"website": ""}, {}, (S3Op.DELETE_BUCKET_WEBSITE, "bkt", "")),
    ("GET", "/bkt", {"accelerate": ""}, {}, (S3Op.GET_BUCKET_ACCELERATE, "bkt", "")),
    ("GET", "/bkt", {"notification": ""}, {}, (S3Op.GET_BUCKET_NOTIFICATION, "bkt", "")),
    ("GET", "/bkt", {"replication": ""}, {}, (S3Op.GET_BUCKET_REPLICATION, "bkt", "")),
    ("DELETE", "/bkt", {"replication": ""}, {}, (S3Op.DELETE_BUCKET_REPLICATION, "bkt", "")),
    ("GET", "/bkt", {"metrics": "", "id": "m"}, {},
     (S3Op.LIST_BUCKET_METRICS_CONFIGS, "bkt", "")),
    ("DELETE", "/bkt", {"intelligent-tiering": "", "id": "t"}, {},
     (S3Op.DELETE_BUCKET_INTELLIGENT_TIERING_CONFIG, "bkt", "")),
    # bucket configurations: CORS, lifecycle, default encryption, object lock
    ("PUT", "/bkt", {"cors": ""}, {}, (S3Op.PUT_BUCKET_CORS, "bkt", "")),
    ("DELETE", "/bkt", {"cors": ""}, {}, (S3Op.DELETE_BUCKET_CORS, "bkt", "")),
    ("PUT", "/bkt", {"lifecycle": ""}, {}, (S3Op.PUT_BUCKET_LIFECYCLE, "bkt", "")),
    ("DELETE", "/bkt", {"lifecycle": ""}, {}, (S3Op.DELETE_BUCKET_LIFECYCLE, "bkt", "")),
    ("GET", "/bkt", {"encryption": ""}, {}, (S3Op.GET_BUCKET_ENCRYPTION, "bkt", "")),
    ("PUT", "/bkt", {"encryption": ""}, {}, (S3Op.PUT_BUCKET_ENCRYPTION, "bkt", "")),
    ("DELETE", "/bkt", {"encryption": ""}, {}, (S3Op.DELETE_BUCKET_ENCRYPTION, "bkt", "")),
    ("GET", "/bkt", {"object-lock": ""}, {}, (S3Op.GET_OBJECT_LOCK_CONFIG, "bkt", "")),
    ("PUT", "/bkt", {"object-lock": ""}, {}, (S3Op.PUT_OBJECT_LOCK_CONFIG, "bkt", "")),
    ("PUT", "/bkt", {"publicAccessBlock": ""}, {}, (S3Op.PUT_PUBLIC_ACCESS_BLOCK, "bkt", "")),
    ("GET", "/bkt", {"ownershipControls": ""}, {},
     (S3Op.GET_BUCKET_OWNERSHIP_CONTROLS, "bkt", "")),
    ("PUT", "/bkt", {"replication": ""}, {}, (S3Op.BUCKET_SUBRESOURCE, "bkt", "")),
    ("PUT", "/bkt", {"notification": ""}, {}, (S3Op.PUT_BUCKET_NOTIFICATION, "bkt", "")),
    ("PUT", "/bkt", {"requestPayment": ""}, {}, (S3Op.BUCKET_SUBRESOURCE, "bkt", "")),
    ("PATCH", "/bkt", {}, {}, (S3Op.UNKNOWN, "bkt", "")),
    ("OPTIONS", "/bkt/k", {}, {}, (S3Op.OPTIONS, "bkt", "k")),
    # objects
    ("PUT", "/bkt/k", {}, {}, (S3Op.PUT_OBJECT, "bkt", "k")),
    ("GET", "/bkt/k", {}, {}, (S3Op.GET_OBJECT, "bkt", "k")),
    ("HEAD", "/bkt/k", {}, {}, (S3Op.HEAD_OBJECT, "bkt", "k")),
    ("DELETE", "/bkt/k", {}, {}, (S3Op.DELETE_OBJECT, "bkt", "k")),
    ("GET", "/bkt/k", {"versionId": "v1"}, {}, (S3Op.GET_OBJECT, "bkt", "k")),
    ("PUT", "/bkt/k", {}, {"x-amz-copy-source": "/a/b"}, (S3Op.COPY_OBJECT, "bkt", "k")),
    ("GET", "/bkt/k", {"tagging": ""}, {}, (S3Op.GET_OBJECT_TAGGING, "bkt", "k")),
    ("PUT", "/bkt/k", {"tagging": ""}, {}, (S3Op.PUT_OBJECT_TAGGING, "bkt", "k")),
    ("DELETE", "/bkt/k", {"tagging": ""}, {}, (S3Op.DELETE_OBJECT_TAGGING, "bkt", "k")),
    ("GET", "/bkt/k", {"acl": ""}, {}, (S3Op.GET_OBJECT_ACL, "bkt", "k")),
    ("PUT", "/bkt/k", {"acl": ""}, {}, (S3Op.PUT_OBJECT_ACL, "bkt", "k")),
    ("GET", "/bkt/k", {"attributes": ""}, {}, (S3Op.GET_OBJECT_ATTRIBUTES, "bkt", "k")),
    ("GET", "/bkt/k", {"retention": ""}, {}, (S3Op.GET_OBJECT_RETENTION, "bkt", "k")),
    ("PUT", "/bkt/k", {"retention": ""}, {}, (S3Op.PUT_OBJECT_RETENTION, "bkt", "k")),
    ("GET", "/bkt/k", {"legal-hold": ""}, {}, (S3Op.GET_OBJECT_LEGAL_HOLD, "bkt", "k")),
    ("PUT", "/bkt/k", {"legal-hold": ""}, {}, (S3Op.PUT_OBJECT_LEGAL_HOLD, "bkt", "k")),
    ("DELETE", "/bkt/k", {"retention": ""}, {}, (S3Op.UNKNOWN, "bkt", "k")),
    ("GET", "/bkt/k", {"torrent": ""}, {}, (S3Op.GET_OBJECT_TORRENT, "bkt", "k")),
    ("PUT", "/bkt/k", {"torrent": ""}, {}, (S3Op.OBJECT_SUBRESOURCE, "bkt", "k")),
    ("POST", "/bkt/k", {"restore": ""}, {}, (S3Op.RESTORE_OBJECT, "bkt", "k")),
    ("POST", "/bkt/k", {"select": "", "select-type": "2"}, {},
     (S3Op.SELECT_OBJECT_CONTENT, "bkt", "k")),
    ("POST", "/bkt/k", {}, {}, (S3Op.UNKNOWN, "bkt", "k")),
    # multipart
    ("POST", "/bkt/k", {"uploads": ""}, {}, (S3Op.CREATE_MULTIPART_UPLOAD, "bkt", "k")),
    ("PUT", "/bkt/k", {"partNumber": "1", "uploadId": "u"}, {}, (S3Op.UPLOAD_PART, "bkt", "k")),
    ("PUT", "/bkt/k", {"partNumber": "2", "uploadId": "u"}, {"X-Amz-Copy-Source": "b/s"},
     (S3Op.UPLOAD_PART_COPY, "bkt", "k")),
    ("PUT", "/bkt/k", {"uploadId": "u"}, {}, (S3Op.UNKNOWN, "bkt", "k")),
    ("POST", "/bkt/k", {"uploadId": "u"}, {}, (S3Op.COMPLETE_MULTIPART_UPLOAD, "bkt", "k")),
    ("DELETE", "/bkt/k", {"uploadId": "u"}, {}, (S3Op.ABORT_MULTIPART_UPLOAD, "bkt", "k")),
    ("GET", "/bkt/k", {"uploadId": "u"}, {}, (S3Op.LIST_PARTS, "bkt", "k")),
    ("GET", "/bkt/k", {"partNumber": "3"}, {}, (S3Op.GET_OBJECT, "bkt", "k")),
    # odd keys: decoded once, slashes and '+' kept
    ("GET", "/bkt/a/b/c", {}, {}, (S3Op.GET_OBJECT, "bkt", "a/b/c")),
    ("GET", "/bkt//lead", {}, {}, (S3Op.GET_OBJECT, "bkt", "/lead")),
    ("GET", "/bkt/dir/", {}, {}, (S3Op.GET_OBJECT, "bkt", "dir/")),
    ("GET", "/bkt/a%2Fb", {}, {}, (S3Op.GET_OBJECT, "bkt", "a/b")),
    ("GET", "/bkt/a%252Fb", {}, {}, (S3Op.GET_OBJECT, "bkt", "a%2Fb")),
    ("GET", "/bkt/1+1%20%3D%202", {}, {}, (S3Op.GET_OBJECT, "bkt", "1+1 = 2")),
    ("GET", "/bkt/%E2%98%83%20snow", {}, {}, (S3Op.GET_OBJECT, "bkt", "\u2603 snow")),
    ("GET", "/bkt/a//b//", {}, {}, (S3Op.GET_OBJECT, "bkt", "a//b//")),
    # virtual-host style
    ("GET", "/", {}, {"Host": f"bkt.{DOMAIN}"}, (S3Op.LIST_OBJECTS, "bkt", "")),
    ("PUT", "/", {}, {"Host": f"bkt.{DOMAIN}:9000"}, (S3Op.CREATE_BUCKET, "bkt", "")),
    ("GET", "/k/x", {}, {"Host": f"my.dotted.bkt.{DOMAIN}"},
     (S3Op.GET_OBJECT, "my.dotted.bkt", "k/x")),
    ("GET", "//k", {}, {"Host": f"bkt.{DOMAIN}"}, (S3Op.GET_OBJECT, "bkt", "/k")),
    ("GET", "/", {}, {"Host": f"BKT.{DOMAIN.upper()}"}, (S3Op.LIST_OBJECTS, "bkt", "")),
    # Host equal to the domain, an IP or another name: path-style
    ("GET", "/bkt/k", {}, {"Host": DOMAIN}, (S3Op.GET_OBJECT, "bkt", "k")),
    ("GET", "/bkt/k", {}, {"Host": f"{DOMAIN}:9000"}, (S3Op.GET_OBJECT, "bkt", "k")),
    ("GET", "/bkt/k", {}, {"Host": "127.0.0.1:9000"}, (S3Op.GET_OBJECT, "bkt", "k")),
    ("GET", "/bkt/k", {}, {"Host": "[::1]:9000"}, (S3Op.GET_OBJECT, "bkt", "k")),
    ("GET", "/bkt/k", {}, {"Host": f"bkt.other{DOMAIN}"}, (S3Op.GET_OBJECT, "bkt", "k")),
]


@pytest.mark.parametrize(("method", "path", "query", "headers", "expected"), CASES)
def test_classify(method, path, query, headers, expected):
    assert classify(method, path, query, CIMultiDict(headers), domain=DOMAIN) == expected


def test_without_domain_host_never_names_a_bucket():
    headers = CIMultiDict({"Host": f"bkt.{DOMAIN}"})
    assert classify("GET", "/", {}, headers, domain=None) == (S3Op.LIST_BUCKETS, "", "")


def test_path_that_is_not_utf8_is_invalid_uri():
    with pytest.raises(InvalidURI):
        classify("GET", "/bkt/%FF%FE", {}, CIMultiDict(), domain=None)


def test_every_op_is_named_after_its_aws_operation():
    values = [op.value for op in S3Op]
    assert len(values) == len(set(values))
    assert S3Op("PutObject") is S3Op.PUT_OBJECT
