"""CORS and lifecycle configuration documents: what is accepted, what is refused with
which S3 error, and how CORS rules match a browser's request."""

from __future__ import annotations

import pytest

from kurastore.gateway.s3 import cors, lifecycle
from kurastore.gateway.s3 import errors as s3e


def _cors(*rules: str) -> bytes:
    return ("<CORSConfiguration>" + "".join(f"<CORSRule>{r}</CORSRule>" for r in rules)
            + "</CORSConfiguration>").encode()


def test_cors_round_trip_keeps_every_field() -> None:
    body = _cors("<ID>r</ID><AllowedHeader>*</AllowedHeader><AllowedMethod>GET</AllowedMethod>"
                 "<AllowedOrigin>https://*.a.com</AllowedOrigin><ExposeHeader>ETag</ExposeHeader>"
                 "<MaxAgeSeconds>30</MaxAgeSeconds>")
    rules = cors.parse_config(body)
    assert cors.parse_config(cors.render_config(rules)) == rules
    assert rules[0]["max_age"] == 30 and rules[0]["expose"] == ["ETag"]


@pytest.mark.parametrize(("rule", "error"), [
    ("<AllowedOrigin>*</AllowedOrigin>", s3e.MalformedXML),
    ("<AllowedMethod>GET</AllowedMethod>", s3e.MalformedXML),
    ("<AllowedMethod>PATCH</AllowedMethod><AllowedOrigin>*</AllowedOrigin>", s3e.InvalidRequest),
    ("<AllowedMethod>GET</AllowedMethod><AllowedOrigin>*.*.a</AllowedOrigin>",
     s3e.InvalidRequest),
])
def test_cors_refuses_bad_rules(rule: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        cors.parse_config(_cors(rule))
    with pytest.raises(s3e.MalformedXML):
        cors.parse_config(_cors())


def test_cors_matching_is_first_rule_origin_method_and_headers() -> None:
    rules = [
        {"methods": ["GET"], "origins": ["*suffix", "start*end"], "headers": []},
        {"methods": ["PUT"], "origins": ["*"], "headers": ["x-amz-*", "content-type"]},
    ]
    assert cors.find_rule(rules, "a.suffix", "GET") == (rules[0], "*suffix")
    assert cors.find_rule(rules, "startend", "GET") == (rules[0], "start*end")
    assert cors.find_rule(rules, "0start1end", "GET") is None
    assert cors.find_rule(rules, "a.suffix", "DELETE") is None
    assert cors.find_rule(rules, "x", "PUT", ["x-amz-meta-a", "content-type"])[0] is rules[1]
    assert cors.find_rule(rules, "x", "PUT", ["authorization"]) is None
    assert cors.find_rule(rules, "a.suffix", "GET", ["x-custom"]) is None
    headers = cors.answer_headers(rules[1], "*", "x")
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in headers


def _lc(*rules: str) -> bytes:
    return ("<LifecycleConfiguration>" + "".join(f"<Rule>{r}</Rule>" for r in rules)
            + "</LifecycleConfiguration>").encode()


def test_lifecycle_round_trip_keeps_the_filter_shape() -> None:
    body = _lc(
        "<ID>a</ID><Prefix>logs/</Prefix><Status>Enabled</Status>"
        "<Expiration><Days>3</Days></Expiration>",
        "<ID>b</ID><Filter><And><Prefix>x/</Prefix><Tag><Key>k</Key><Value>v</Value></Tag>"
        "<ObjectSizeGreaterThan>10</ObjectSizeGreaterThan></And></Filter>"
        "<Status>Disabled</Status><Expiration><Date>2030-01-01T00:00:00Z</Date></Expiration>"
        "<NoncurrentVersionExpiration><NoncurrentDays>4</NoncurrentDays>"
        "<NewerNoncurrentVersions>2</NewerNoncurrentVersions></NoncurrentVersionExpiration>",
        "<ID>c</ID><Filter></Filter><Status>Enabled</Status>"
        "<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>"
        "</AbortIncompleteMultipartUpload>",
    )
    rules = lifecycle.parse_config(body)
    assert lifecycle.parse_config(lifecycle.render_config(rules)) == rules
    assert rules[0]["prefix"] == "logs/" and rules[0]["filter"] is None
    assert rules[1]["filter"]["tags"] == [["k", "v"]] and rules[1]["filter"]["gt"] == 10
    assert rules[2]["filter"]["form"] == "empty" and rules[2]["abort_days"] == 1


@pytest.mark.parametrize(("rule", "error"), [
    ("<ID>x</ID><Prefix/><Status>enabled</Status><Expiration><Days>1</Days></Expiration>",
     s3e.MalformedXML),
    ("<ID>x</ID><Prefix/><Status>Enabled</Status><Expiration><Days>0</Days></Expiration>",
     s3e.InvalidArgument),
    ("<ID>x</ID><Prefix/><Status>Enabled</Status>"
     "<Expiration><Date>2030-01-01T10:00:00Z</Date></Expiration>", s3e.InvalidArgument),
    ("<ID>x</ID><Prefix/><Status>Enabled</Status>", s3e.InvalidRequest),
    ("<ID>x</ID><Prefix/><Filter/><Status>Enabled</Status>"
     "<Expiration><Days>1</Days></Expiration>", s3e.MalformedXML),
    ("<ID>x</ID><Filter><Tag><Key>k</Key><Value>v</Value></Tag></Filter><Status>Enabled</Status>"
     "<AbortIncompleteMultipartUpload><DaysAfterInitiation>1</DaysAfterInitiation>"
     "</AbortIncompleteMultipartUpload>", s3e.InvalidRequest),
    ("<ID>x</ID><Prefix/><Status>Enabled</Status><Transition><Days>1</Days>"
     "<StorageClass>GLACIER</StorageClass></Transition>", s3e.NotImplemented_),
    (f"<ID>{'i' * 256}</ID><Prefix/><Status>Enabled</Status>"
     "<Expiration><Days>1</Days></Expiration>", s3e.InvalidArgument),
])
def test_lifecycle_refuses_bad_rules(rule: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        lifecycle.parse_config(_lc(rule))


def test_lifecycle_keeps_conditions_given_without_and() -> None:
    rule = ("<ID>f</ID><Filter><Prefix>p/</Prefix><Tag><Key>k</Key><Value>v</Value></Tag>"
            "</Filter><Status>Enabled</Status><Expiration><Days>1</Days></Expiration>")
    (parsed,) = lifecycle.parse_config(_lc(rule))
    assert parsed["filter"]["prefix"] == "p/" and parsed["filter"]["tags"] == [["k", "v"]]
    assert lifecycle.parse_config(lifecycle.render_config([parsed])) == [parsed]
    twice = rule.replace("<Prefix>p/</Prefix>", "<Prefix>p/</Prefix><Prefix>q/</Prefix>")
    with pytest.raises(s3e.MalformedXML):
        lifecycle.parse_config(_lc(twice))


def test_lifecycle_ids_are_unique_and_generated_when_missing() -> None:
    rule = "<Prefix>p</Prefix><Status>Enabled</Status><Expiration><Days>1</Days></Expiration>"
    first, second = lifecycle.parse_config(_lc(rule, rule))
    assert first["id"] and second["id"] and first["id"] != second["id"]
    with pytest.raises(s3e.InvalidArgument):
        lifecycle.parse_config(_lc("<ID>same</ID>" + rule, "<ID>same</ID>" + rule))
