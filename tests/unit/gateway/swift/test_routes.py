"""Swift routing: which requests on the shared port are Swift, and which operation."""

from __future__ import annotations

import pytest
from multidict import CIMultiDict

from kurastore.gateway.swift.routes import (
    SwiftOp,
    classify,
    is_swift_request,
    parse_copy_path,
    split_path,
)

SIGV4 = {"Authorization": "AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/s3/aws4_request"}


@pytest.mark.parametrize(
    ("path", "query", "headers", "swift"),
    [
        ("/auth/v1.0", {}, {"X-Auth-User": "a", "X-Auth-Key": "k"}, True),
        ("/auth/v1", {}, {}, True),
        ("/info", {}, {}, True),
        ("/healthcheck", {}, {}, True),
        ("/v1/AUTH_abc", {}, {}, True),
        ("/v1/AUTH_abc/c/o", {}, {"X-Auth-Token": "AUTH_tkx"}, True),
        ("/v1/AUTH_abc/c/o", {}, {"X-Storage-Token": "AUTH_tkx"}, True),
        # S3 requests for buckets that happen to be named like Swift endpoints
        ("/auth/v1.0", {}, SIGV4, False),
        ("/info", {"X-Amz-Signature": "abc"}, {}, False),
        ("/healthcheck", {"Signature": "abc"}, {}, False),
        ("/v1/AUTH_abc/key", {}, SIGV4, False),
        ("/v1/AUTH_abc/key", {"X-Amz-Signature": "abc"}, {}, False),
        # a Swift token wins over an S3-looking query parameter
        ("/v1/AUTH_abc/c", {"Signature": "x"}, {"X-Auth-Token": "t"}, True),
        # a Swift token on any other path: the Swift answer to a malformed path
        ("/v1", {}, {"X-Auth-Token": "t"}, True),
        ("/v1//c/o", {}, {"X-Auth-Token": "t"}, True),
        ("/bucket/key", {}, {"X-Auth-Token": "t", **SIGV4}, False),
        # everything else is S3
        ("/", {}, {}, False),
        ("/v1", {}, {}, False),
        ("/v1/other/key", {}, {}, False),
        ("/bucket/v1/AUTH_abc", {}, {}, False),
        ("/auth/v1.0/x", {}, {}, False),
        ("/information", {}, {}, False),
    ],
)
def test_is_swift_request(path, query, headers, swift):
    assert is_swift_request(path, query, CIMultiDict(headers)) is swift


@pytest.mark.parametrize(
    ("method", "path", "headers", "op", "container", "obj"),
    [
        ("GET", "/auth/v1.0", {}, SwiftOp.AUTH, "", ""),
        ("PUT", "/auth/v1.0", {}, SwiftOp.METHOD_NOT_ALLOWED, "", ""),
        ("GET", "/info", {}, SwiftOp.INFO, "", ""),
        ("HEAD", "/healthcheck", {}, SwiftOp.HEALTHCHECK, "", ""),
        ("GET", "/v1/AUTH_a", {}, SwiftOp.GET_ACCOUNT, "", ""),
        ("GET", "/v1/AUTH_a/", {}, SwiftOp.GET_ACCOUNT, "", ""),
        ("HEAD", "/v1/AUTH_a", {}, SwiftOp.HEAD_ACCOUNT, "", ""),
        ("POST", "/v1/AUTH_a", {}, SwiftOp.POST_ACCOUNT, "", ""),
        ("PUT", "/v1/AUTH_a", {}, SwiftOp.METHOD_NOT_ALLOWED, "", ""),
        ("PUT", "/v1/AUTH_a/c", {}, SwiftOp.PUT_CONTAINER, "c", ""),
        ("PUT", "/v1/AUTH_a/c/", {}, SwiftOp.PUT_CONTAINER, "c", ""),
        ("GET", "/v1/AUTH_a/c", {}, SwiftOp.GET_CONTAINER, "c", ""),
        ("DELETE", "/v1/AUTH_a/c", {}, SwiftOp.DELETE_CONTAINER, "c", ""),
        ("POST", "/v1/AUTH_a/c", {}, SwiftOp.POST_CONTAINER, "c", ""),
        ("COPY", "/v1/AUTH_a/c", {}, SwiftOp.METHOD_NOT_ALLOWED, "c", ""),
        ("PUT", "/v1/AUTH_a/c/o", {}, SwiftOp.PUT_OBJECT, "c", "o"),
        ("PUT", "/v1/AUTH_a/c/o", {"X-Copy-From": "/c/x"}, SwiftOp.COPY_OBJECT, "c", "o"),
        ("COPY", "/v1/AUTH_a/c/o", {"Destination": "c/y"}, SwiftOp.COPY_OBJECT, "c", "o"),
        ("GET", "/v1/AUTH_a/c/dir/sub/o", {}, SwiftOp.GET_OBJECT, "c", "dir/sub/o"),
        ("HEAD", "/v1/AUTH_a/c/o%20x", {}, SwiftOp.HEAD_OBJECT, "c", "o x"),
        ("POST", "/v1/AUTH_a/c/o", {}, SwiftOp.POST_OBJECT, "c", "o"),
        ("DELETE", "/v1/AUTH_a/c/a%2Fb", {}, SwiftOp.DELETE_OBJECT, "c", "a/b"),
        ("GET", "/v1/AUTH_a/c/o/", {}, SwiftOp.GET_OBJECT, "c", "o/"),
        ("PATCH", "/v1/AUTH_a/c/o", {}, SwiftOp.METHOD_NOT_ALLOWED, "c", "o"),
        ("GET", "/v1/AUTH_a//o", {}, SwiftOp.MISSING_SEGMENT, "", ""),
        ("GET", "/v1//c/o", {}, SwiftOp.MISSING_SEGMENT, "", ""),
        ("GET", "//v1/AUTH_a", {}, SwiftOp.MISSING_SEGMENT, "", ""),
        ("GET", "/v1/AUTH_a/c/%ff", {}, SwiftOp.INVALID_PATH, "", ""),
        ("GET", "/v1/AUTH_a/c/a%00b", {}, SwiftOp.INVALID_PATH, "", ""),
        ("PUT", "/v1", {}, SwiftOp.BAD_URL, "", ""),
        ("GET", "/info%20asdf", {}, SwiftOp.BAD_URL, "", ""),
    ],
)
def test_classify(method, path, headers, op, container, obj):
    route = classify(method, path, CIMultiDict(headers))
    assert route.op is op
    assert (route.container, route.obj) == (container, obj)


def test_encoded_slash_stays_in_the_container_name():
    # "a%2Fb" names a container "a/b" (refused later), not object b in container a.
    assert split_path("/v1/AUTH_x/a%2Fb") == ("AUTH_x", "a/b", "")
    assert split_path("/v1/AUTH_x/a%2Fb/o") == ("AUTH_x", "a/b", "o")


def test_account_is_decoded_once():
    assert split_path("/v1/AUTH_%41bc/c/%2541") == ("AUTH_Abc", "c", "%41")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("c/o", ("c", "o")), ("/c/o/p", ("c", "o/p")), ("/c/o%20p", ("c", "o p"))],
)
def test_parse_copy_path(value, expected):
    assert parse_copy_path(value) == expected


@pytest.mark.parametrize("value", ["", "c", "/c/", "/c", "//o"])
def test_parse_copy_path_refuses(value):
    with pytest.raises(ValueError):
        parse_copy_path(value)
