"""Bucket policy validation and evaluation (gateway/s3/policy.py), as pure functions."""

from __future__ import annotations

import json

import pytest

from kurastore.gateway.s3 import policy

BUCKET = "photos"
ALICE, BOB = "a" * 64, "b" * 64


def doc(*statements: dict) -> dict:
    return policy.parse(json.dumps({"Version": "2012-10-17", "Statement": list(statements)}),
                        BUCKET)


def decide(d: dict, caller: str | None, action: str, key: str | None = None,
           **context: str) -> str | None:
    resource = f"arn:aws:s3:::{BUCKET}" + (f"/{key}" if key is not None else "")
    ctx = {name.replace("__", ":").replace("_", "-").lower(): [value]
           for name, value in context.items()}
    return policy.evaluate(d, caller=caller, action=action, resource=resource, context=ctx)


def test_principals_actions_resources_and_deny_wins() -> None:
    d = doc(
        {"Effect": "Allow", "Principal": "*", "Action": "s3:Get*",
         "Resource": f"arn:aws:s3:::{BUCKET}/public/*"},
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{BOB}:root"},
         "Action": ["s3:PutObject", "s3:ListBucket"],
         "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]},
        {"Effect": "Deny", "Principal": "*", "NotAction": "s3:GetObject",
         "Resource": f"arn:aws:s3:::{BUCKET}/public/*"},
    )  # fmt: skip
    assert decide(d, None, "s3:GetObject", "public/a.jpg") == "Allow"
    assert decide(d, None, "S3:GETOBJECT", "public/a.jpg") == "Allow"  # actions ignore case
    assert decide(d, None, "s3:GetObject", "Public/a.jpg") is None  # resources do not
    assert decide(d, None, "s3:GetObject", "private/a.jpg") is None
    assert decide(d, BOB, "s3:PutObject", "x") == "Allow"
    assert decide(d, ALICE, "s3:PutObject", "x") is None
    assert decide(d, BOB, "s3:PutObject", "public/x") == "Deny"
    assert decide(d, BOB, "s3:ListBucket") == "Allow"


def test_conditions() -> None:
    d = doc(
        {"Effect": "Allow", "Principal": "*", "Action": "s3:ListBucket",
         "Resource": f"arn:aws:s3:::{BUCKET}",
         "Condition": {"StringLike": {"s3:prefix": ["home/*", "shared/"]},
                       "IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}},
        {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*",
         "Condition": {"Bool": {"aws:SecureTransport": False}}},
    )  # fmt: skip
    ok = {"s3__prefix": "home/alice", "aws__SourceIp": "10.1.2.3", "aws__SecureTransport": "true"}
    assert decide(d, ALICE, "s3:ListBucket", **ok) == "Allow"
    assert decide(d, ALICE, "s3:ListBucket", **{**ok, "s3__prefix": "etc/"}) is None
    assert decide(d, ALICE, "s3:ListBucket", **{**ok, "aws__SourceIp": "192.168.0.1"}) is None
    assert decide(d, ALICE, "s3:ListBucket", **{**ok, "aws__SecureTransport": "false"}) == "Deny"
    # A missing key fails a positive operator, and passes with IfExists or Null.
    assert decide(d, ALICE, "s3:ListBucket", aws__SourceIp="10.0.0.1",
                  aws__SecureTransport="true") is None
    d2 = doc({"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
              "Resource": f"arn:aws:s3:::{BUCKET}/*",
              "Condition": {"StringLikeIfExists": {"aws:Referer": "https://example.com/*"},
                            "Null": {"s3:x-amz-acl": "true"}}})  # fmt: skip
    assert decide(d2, None, "s3:GetObject", "k") == "Allow"
    assert decide(d2, None, "s3:GetObject", "k", aws__Referer="https://example.com/p") == "Allow"
    assert decide(d2, None, "s3:GetObject", "k", aws__Referer="https://evil.example") is None
    assert decide(d2, None, "s3:GetObject", "k", s3__x_amz_acl="public-read") is None


@pytest.mark.parametrize("statement", [
    {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
     "Resource": "arn:aws:s3:::other/*"},  # another bucket
    {"Effect": "Allow", "NotPrincipal": {"AWS": BOB}, "Action": "s3:GetObject",
     "Resource": f"arn:aws:s3:::{BUCKET}/*"},  # NotPrincipal with Allow
    {"Effect": "Maybe", "Principal": "*", "Action": "s3:GetObject", "Resource": "*"},
    {"Effect": "Allow", "Principal": "*", "Action": "ec2:RunInstances", "Resource": "*"},
    {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "*",
     "Condition": {"StringSortOf": {"s3:prefix": "x"}}},
])  # fmt: skip
def test_invalid_policies_are_malformed(statement: dict) -> None:
    with pytest.raises(policy.MalformedPolicy):
        doc(statement)
    with pytest.raises(policy.MalformedPolicy):
        policy.parse(b"{not json", BUCKET)


def test_public_means_anyone_unrestricted() -> None:
    anyone = {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "s3:GetObject",
              "Resource": f"arn:aws:s3:::{BUCKET}/*"}
    assert policy.is_public(doc(anyone))
    assert not policy.is_public(doc({**anyone, "Principal": {"AWS": BOB}}))
    assert not policy.is_public(doc({**anyone, "Effect": "Deny"}))
    assert not policy.is_public(doc({**anyone, "Condition": {
        "IpAddress": {"aws:SourceIp": "10.0.0.0/32"}}}))
