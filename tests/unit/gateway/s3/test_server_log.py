"""S3 server access logging as pure functions: record fields and log object keys
(gateway/s3/server_log.py), the target bucket checks (bucket_logging.py) and the
service principal of the log delivery in bucket policies (policy.py)."""

from __future__ import annotations

import calendar
import json
import shlex

import pytest

from kurastore.gateway.s3 import bucket_logging, policy, server_log
from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3.routes import S3Op
from kurastore.metadata import BucketRecord

OWNER, OTHER = "a" * 64, "b" * 64
WHEN = calendar.timegm((2019, 2, 6, 0, 0, 38))


def test_operation_names() -> None:
    assert server_log.operation(S3Op.PUT_OBJECT, "PUT") == "REST.PUT.OBJECT"
    assert server_log.operation(S3Op.LIST_OBJECTS_V2, "GET") == "REST.GET.BUCKET"
    assert server_log.operation(S3Op.COPY_OBJECT, "PUT") == "REST.COPY.OBJECT"
    assert server_log.operation(S3Op.GET_BUCKET_LOGGING, "GET") == "REST.GET.LOGGING_STATUS"
    assert server_log.operation(S3Op.DELETE_OBJECTS, "POST") == "REST.POST.MULTI_OBJECT_DELETE"
    assert server_log.operation(S3Op.UNKNOWN, "PATCH") == "REST.PATCH.UNKNOWN"


def test_time_is_utc_in_english() -> None:
    assert server_log.log_time(WHEN) == "[06/Feb/2019:00:00:38 +0000]"


def test_presigned_secrets_are_redacted() -> None:
    uri = server_log.request_uri(
        "GET", "/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20190206"
               "&X-Amz-Signature=abc123&x-amz-security-token=t0kv&Signature=v2sig&a=1",
        (1, 1))
    assert "abc123" not in uri and "t0kv" not in uri and "v2sig" not in uri
    assert uri == ('"GET /b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AK%2F20190206'
                   '&X-Amz-Signature=REDACTED&x-amz-security-token=REDACTED'
                   '&Signature=REDACTED&a=1 HTTP/1.1"')


def test_fields_stay_single_tokens() -> None:
    assert server_log.quoted('say "hi"\r\n\\') == '"say \\"hi\\"\\\\"'
    assert shlex.split(server_log.quoted('a "b" c')) == ['a "b" c']
    assert server_log.quoted("") == '"-"' and server_log.token(None) == "-"
    assert server_log.token("two words\n") == "two%20words"
    entry = server_log.Entry("bkt", WHEN, "[t] rest")
    assert server_log.record(OWNER, entry) == f"{OWNER} bkt [t] rest\n"


def test_object_keys() -> None:
    assert server_log.object_key("logs/", partitioned=False, owner=OWNER, region="eu-1",
                                 bucket="src", when=WHEN, unique="0123456789ABCDEF") == (
        "logs/2019-02-06-00-00-38-0123456789ABCDEF")
    assert server_log.object_key("", partitioned=True, owner=OWNER, region="eu-1",
                                 bucket="src", when=WHEN, unique="U") == (
        f"{OWNER}/eu-1/src/2019/02/06/2019-02-06-00-00-38-U")


# --- target checks and the log delivery's grant ----------------------------------------------


def _bucket(name: str, owner: str = OWNER, region: str = "us-east-1", **settings) -> BucketRecord:
    return BucketRecord(name=name, owner=owner, created=0.0, region=region, settings=settings)


def _delivery_policy(target: str, source: str, prefix: str = "logs/", account: str = OWNER,
                     effect: str = "Allow", principal: object = None) -> dict:
    return policy.parse(json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": effect, "Principal": principal or {"Service": bucket_logging.SERVICE},
        "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{target}/{prefix}*",
        "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{source}"},
                      "StringEquals": {"aws:SourceAccount": account}},
    }]}), target)  # fmt: skip


CONFIG = {"target_bucket": "logs", "target_prefix": "logs/", "grants": [],
          "key_format": "simple", "date_source": ""}


def test_the_delivery_grant() -> None:
    source = _bucket("src")
    allowed = _bucket("logs", policy=_delivery_policy("logs", "src"))
    assert bucket_logging.delivery_allowed(source, allowed, "logs/")
    assert not bucket_logging.delivery_allowed(source, allowed, "other/")
    assert not bucket_logging.delivery_allowed(_bucket("src2"), allowed, "logs/")
    wrong_account = _bucket("logs", policy=_delivery_policy("logs", "src", account=OTHER))
    assert not bucket_logging.delivery_allowed(source, wrong_account, "logs/")
    users_only = _bucket("logs", policy=_delivery_policy("logs", "src", principal={"AWS": "*"}))
    assert not bucket_logging.delivery_allowed(source, users_only, "logs/")
    denied = _bucket("logs", policy=_delivery_policy("logs", "src", effect="Deny"),
                     acl=[["WRITE", "uri", "http://acs.amazonaws.com/groups/s3/LogDelivery"]])
    assert not bucket_logging.delivery_allowed(source, denied, "logs/")
    by_acl = _bucket("logs", acl=[["WRITE", "uri",
                                   "http://acs.amazonaws.com/groups/s3/LogDelivery"]])
    assert bucket_logging.delivery_allowed(source, by_acl, "logs/")
    acl_off = _bucket("logs", ownership="BucketOwnerEnforced", acl=by_acl.settings["acl"])
    assert not bucket_logging.delivery_allowed(source, acl_off, "logs/")


def test_a_service_grant_gives_users_nothing() -> None:
    doc = _delivery_policy("logs", "src")
    context = {"aws:sourcearn": ["arn:aws:s3:::src"], "aws:sourceaccount": [OWNER]}
    assert policy.evaluate(doc, caller=OWNER, action="s3:PutObject",
                           resource="arn:aws:s3:::logs/logs/x", context=context) is None


@pytest.mark.parametrize(("target", "error"), [
    (_bucket("logs", owner=OTHER, policy=_delivery_policy("logs", "src")),
     bucket_logging.InvalidTargetBucketForLogging),
    (_bucket("logs", region="eu-west-1", policy=_delivery_policy("logs", "src")),
     bucket_logging.CrossLocationLoggingProhibited),
    (_bucket("logs", policy=_delivery_policy("logs", "src"),
             object_lock={"enabled": True, "mode": "GOVERNANCE", "days": 1}),
     bucket_logging.InvalidTargetBucketForLogging),
    (_bucket("logs"), bucket_logging.InvalidTargetBucketForLogging),
])  # fmt: skip
def test_target_checks(target: BucketRecord, error: type[s3e.S3Error]) -> None:
    with pytest.raises(error):
        bucket_logging.check_target(_bucket("src"), target, CONFIG)


def test_target_grants_need_acls() -> None:
    target = _bucket("logs", policy=_delivery_policy("logs", "src"),
                     ownership="BucketOwnerEnforced")
    bucket_logging.check_target(_bucket("src"), target, CONFIG)
    with_grants = {**CONFIG, "grants": [["READ", "id", OTHER]]}
    with pytest.raises(s3e.AccessControlListNotSupported):
        bucket_logging.check_target(_bucket("src"), target, with_grants)
