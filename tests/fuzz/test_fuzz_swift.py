"""Fuzz Swift: paths (percent-encoding garbage, empty and huge segments), verbs,
headers (copy, manifests, expiry, metadata, conditions) and SLO manifests (JSON
garbage, wrong shapes, segments that do not exist or are the manifest itself).
Every answer carries a Swift status and X-Trans-Id, never a 500 or a hang."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from fuzz.target import Target, fuzz_settings
from fuzz.wire import assert_swift_answer, field_value, send
from hypothesis import given
from hypothesis import strategies as st

CONTAINER = "fuzzswift"

segment = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20)
    .map(lambda t: quote(t.encode(), safe="")),
    st.sampled_from(["", ".", "..", "%", "%ZZ", "%FF%FE", "%C0%AF", "%2F", "a%00b", "x" * 300,
                     CONTAINER, "obj", "segments", "%E2%98%83"]),
)
header_names = st.sampled_from([
    "X-Copy-From", "Destination", "X-Object-Manifest", "X-Delete-At", "X-Delete-After",
    "X-Object-Meta-Fuzz", "X-Container-Meta-Fuzz", "X-Account-Meta-Fuzz", "If-Match",
    "If-None-Match", "If-Modified-Since", "Range", "Content-Type", "X-Versions-Location",
    "X-Container-Read", "X-Remove-Object-Meta-Fuzz", "X-Static-Large-Object", "Etag",
    "X-Detect-Content-Type", "X-Fresh-Metadata", "Content-Disposition", "Accept",
])
header_values = st.one_of(
    st.sampled_from(["", "*", "0", "-1", "99999999999999999999", "bytes=0-1", "bytes=5-1",
                     f"{CONTAINER}/obj", f"/{CONTAINER}/obj", "/", "a/b/c", "%FF/x", "true",
                     "application/json", "text/plain;swift_bytes=1", "x" * 5000]),
    st.text(max_size=40).map(lambda t: t.replace("\r", "").replace("\n", "")),
)
queries = st.sampled_from(["", "?multipart-manifest=put", "?multipart-manifest=get",
                           "?multipart-manifest=delete", "?format=json", "?format=xml",
                           "?limit=-1", "?limit=abc", "?marker=%FF", "?prefix=a&delimiter=/",
                           "?end_marker=z&reverse=true", "?symlink=get", "?temp_url_sig=x"])
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70), st.floats(),
              st.text(max_size=20)),
    lambda children: st.one_of(st.lists(children, max_size=4),
                               st.dictionaries(st.text(max_size=10), children, max_size=4)),
    max_leaves=20,
)
segment_entries = st.fixed_dictionaries({}, optional={
    "path": st.one_of(st.sampled_from([f"/{CONTAINER}/seg", f"/{CONTAINER}/manifest", "/",
                                       "nocontainer", f"/{CONTAINER}/", "/other/x"]),
                      st.text(max_size=30)),
    "etag": st.one_of(st.none(), st.text(max_size=34), st.just("0" * 32)),
    "size_bytes": st.one_of(st.none(), st.integers(-5, 1 << 40), st.text(max_size=5)),
    "range": st.one_of(st.text(max_size=12), st.just("0-0"), st.just("5-1")),
    "data": st.text(max_size=12),
})
manifests = st.one_of(
    st.lists(segment_entries, max_size=6).map(lambda x: json.dumps(x).encode()),
    json_values.map(lambda x: json.dumps(x, allow_nan=True).encode()),
    st.binary(max_size=200),
    st.just(b"[" * 100_000),
    st.just(json.dumps([{"path": f"/{CONTAINER}/seg"}] * 1200).encode()),
)


@pytest.fixture(scope="module", autouse=True)
def _swift_container(target: Target) -> None:
    auth = [("X-Auth-Token", target.swift_token)]
    for path, body in ((f"{target.swift_account}/{CONTAINER}", b""),
                       (f"{target.swift_account}/{CONTAINER}/seg", b"s" * 100)):
        answer = send(target.port, "PUT", path, auth, body)
        assert answer.status in (201, 202), answer


@given(
    method=st.sampled_from(["GET", "HEAD", "PUT", "POST", "DELETE", "COPY", "OPTIONS", "PATCH"]),
    parts=st.lists(segment, max_size=4),
    query=queries,
    # Unique names: aiohttp's parser refuses a repeated Etag or Content-Type itself.
    headers=st.lists(st.tuples(header_names, header_values), max_size=4,
                     unique_by=lambda pair: pair[0]),
    body=st.binary(max_size=64),
    own_account=st.booleans(),
)
@fuzz_settings(50)
def test_swift_requests(target: Target, method: str, parts: list[str], query: str,
                        headers: list[tuple[str, str]], body: bytes, own_account: bool) -> None:
    account = target.swift_account if own_account else "/v1/AUTH_" + "0" * 40
    path = "/".join([account, *parts]) + query
    pairs: list[tuple[str, str | bytes]] = [("X-Auth-Token", target.swift_token)]
    pairs += [(name, field_value(value)) for name, value in headers]
    answer = send(target.port, method, path, pairs, body)
    assert_swift_answer(answer)


@given(manifest=manifests, name=st.sampled_from(["manifest", "seg"]))
@fuzz_settings(50)
def test_slo_manifests(target: Target, manifest: bytes, name: str) -> None:
    path = f"{target.swift_account}/{CONTAINER}/{name}?multipart-manifest=put"
    answer = send(target.port, "PUT", path, [("X-Auth-Token", target.swift_token)], manifest,
                  timeout_s=30)
    assert_swift_answer(answer)
    if answer.status < 300:
        # An accepted manifest serves its segments (or fails cleanly before the body).
        got = send(target.port, "GET", path.split("?")[0], [("X-Auth-Token", target.swift_token)])
        assert_swift_answer(got)
        send(target.port, "DELETE", path.split("?")[0], [("X-Auth-Token", target.swift_token)])
        if name == "seg":  # the manifest replaced the segment: put the segment back
            send(target.port, "PUT", path.split("?")[0], [("X-Auth-Token", target.swift_token)],
                 b"s" * 100)


def test_server_still_serving_after_swift_fuzz(target: Target) -> None:
    target.assert_serving()
