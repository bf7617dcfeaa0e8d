"""The POST policy: decoding and evaluation against a form, as AWS answers."""

from __future__ import annotations

import base64
import json

import pytest

from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3 import post_policy

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z
LATER = "2027-01-15T09:00:00.000Z"


def encode(doc: object) -> str:
    return base64.b64encode(json.dumps(doc).encode()).decode()


def policy(*conditions: object, expiration: str = LATER) -> post_policy.Policy:
    return post_policy.decode(encode({"expiration": expiration, "conditions": list(conditions)}))


def test_decode_reads_every_condition_form() -> None:
    p = policy({"bucket": "b"}, ["eq", "$Key", "k"], ["starts-with", "$Content-Type", "image/"],
               ["content-length-range", 10, 100])
    assert [(c.op, c.field, c.value) for c in p.conditions] == [
        ("eq", "bucket", "b"), ("eq", "key", "k"), ("starts-with", "content-type", "image/")
    ]
    assert (p.length.minimum, p.length.maximum) == (10, 100)
    assert p.expiration == NOW + 3600


@pytest.mark.parametrize("text", ["not base64!", encode([1, 2]), encode({"conditions": []}),
                                  encode({"expiration": LATER}),
                                  encode({"expiration": "tomorrow", "conditions": []}),
                                  encode({"expiration": LATER, "conditions": [["in", "$a", "b"]]}),
                                  encode({"expiration": LATER,
                                          "conditions": [["content-length-range", 5, 1]]})])
def test_malformed_policy_is_invalid_policy_document(text: str) -> None:
    with pytest.raises(s3e.InvalidPolicyDocument):
        post_policy.decode(text)


def test_matching_form_passes() -> None:
    p = policy({"bucket": "b"}, ["starts-with", "$key", "up/"], {"x-amz-meta-a": "1"},
               ["starts-with", "$Content-Type", "image/"])
    form = {"key": "up/x.png", "x-amz-meta-a": "1", "content-type": "image/png",
            "policy": "...", "x-amz-signature": "...", "x-ignore-note": "free"}
    post_policy.evaluate(p, form, "b", NOW)


def test_expired_policy() -> None:
    p = policy({"bucket": "b"}, expiration="2020-01-01T00:00:00Z")
    with pytest.raises(s3e.AccessDenied) as exc:
        post_policy.evaluate(p, {}, "b", NOW)
    assert exc.value.text == "Invalid according to Policy: Policy expired."


@pytest.mark.parametrize(("form", "bucket", "failed"), [
    ({"key": "k"}, "other", '["eq", "$bucket", "b"]'),
    ({"key": "down/k"}, "b", '["starts-with", "$key", "up/"]'),
    ({}, "b", '["starts-with", "$key", "up/"]'),
])
def test_failed_condition_names_it(form: dict, bucket: str, failed: str) -> None:
    p = policy({"bucket": "b"}, ["starts-with", "$key", "up/"])
    with pytest.raises(s3e.AccessDenied) as exc:
        post_policy.evaluate(p, form, bucket, NOW)
    assert exc.value.text == "Invalid according to Policy: Policy Condition failed: " + failed


def test_content_type_starts_with_checks_every_value() -> None:
    p = policy(["starts-with", "$content-type", "image/"])
    post_policy.evaluate(p, {"content-type": "image/png, image/jpeg"}, "b", NOW)
    with pytest.raises(s3e.AccessDenied):
        post_policy.evaluate(p, {"content-type": "image/png, text/html"}, "b", NOW)


def test_empty_starts_with_allows_anything() -> None:
    p = policy(["starts-with", "$key", ""], ["starts-with", "$x-amz-meta-note", ""])
    post_policy.evaluate(p, {"key": "anything"}, "b", NOW)


def test_extra_fields_are_refused() -> None:
    p = policy({"key": "k"})
    with pytest.raises(s3e.AccessDenied) as exc:
        post_policy.evaluate(p, {"key": "k", "x-amz-meta-z": "1", "acl": "private"}, "b", NOW)
    assert exc.value.text == "Invalid according to Policy: Extra input fields: acl, x-amz-meta-z"


def test_length_range() -> None:
    length = policy(["content-length-range", 10, 100]).length
    length.check_running(100)
    with pytest.raises(s3e.EntityTooLarge):
        length.check_running(101)
    with pytest.raises(s3e.EntityTooSmall):
        length.check_final(9)
    length.check_final(10)
    unbounded = policy().length
    unbounded.check_final(0)
    unbounded.check_running(10**12)
