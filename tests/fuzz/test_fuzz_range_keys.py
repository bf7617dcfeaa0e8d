"""Fuzz Range headers (on an inline and a sharded object) and odd key names.

Range: any header value gives 200 with the whole object, 206 with exactly the
bytes Content-Range names, or 416 InvalidRange; never a 500 or a wrong byte.
Keys: any UTF-8 name up to the limit stores and reads back byte-exact under the
same name and is listed; a longer name is KeyTooLongError; nothing else fails.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from fuzz.target import BUCKET, LARGE, LARGE_BODY, OBJECT, OBJECT_BODY, Target, fuzz_settings
from fuzz.wire import assert_s3_answer, field_value, send
from hypothesis import given
from hypothesis import strategies as st

numbers = st.one_of(st.integers(0, 400_000), st.integers(0, 1 << 70), st.just(""))
ranges = st.one_of(
    st.builds(lambda a, b: f"bytes={a}-{b}", numbers, numbers),
    st.builds(lambda a, b, c, d: f"bytes={a}-{b},{c}-{d}", numbers, numbers, numbers, numbers),
    st.builds(lambda unit, a: f"{unit}={a}-", st.sampled_from(["bytes", "BYTES", "items", ""]),
              numbers),
    st.text(alphabet="bytes=-0123456789, ;\t", max_size=30),
    st.text(max_size=30).map(lambda t: t.replace("\r", "").replace("\n", "")),
)


@given(value=ranges, large=st.booleans(), head=st.booleans())
@fuzz_settings(80)
def test_range_header(target: Target, value: str, large: bool, head: bool) -> None:
    key, body = (LARGE, LARGE_BODY) if large else (OBJECT, OBJECT_BODY)
    method = "HEAD" if head else "GET"
    path = f"/{BUCKET}/{key}"
    headers = [*target.signer.headers(method, path).items(), ("Range", field_value(value))]
    answer = send(target.port, method, path, headers)
    assert_s3_answer(answer, method)
    assert answer.status in (200, 206, 416), answer
    if answer.status == 416:
        assert answer.headers["content-range"] == f"bytes */{len(body)}"
    if head:
        return
    if answer.status == 200:
        assert answer.body == body
    elif answer.status == 206:
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", answer.headers["content-range"])
        assert match, answer.headers
        first, last, total = (int(g) for g in match.groups())
        assert total == len(body) and first <= last < total
        assert answer.body == body[first:last + 1]


keys = st.one_of(
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1,
            max_size=60),
    st.text(alphabet="/.%+ ?#&=~\\\t", min_size=1, max_size=20),
    st.sampled_from(["..", ".", "/", "//", "a//b", "../../etc/passwd", "a/./b", "%2F", "%",
                     "\u0000", "\r\n", "\ufeff", "\U0001f4a9" * 10, "k" * 1024, "k" * 1025,
                     "\u00e9" * 513]),
)


@given(key=keys)
@fuzz_settings(60)
def test_odd_key_names(target: Target, key: str) -> None:
    path = f"/{BUCKET}/" + quote(key.encode(), safe="/~")
    body = key.encode()[:64] + b"!"
    answer = send(target.port, "PUT", path, list(target.signer.headers("PUT", path).items()),
                  body)
    assert_s3_answer(answer, "PUT")
    if len(key.encode()) > 1024:
        assert answer.code() == "KeyTooLongError"
        return
    if key.startswith("/") and key.strip("/") == "":
        return  # the key is empty or all slashes after the bucket: a bucket-level request
    assert answer.status == 200, answer
    got = send(target.port, "GET", path, list(target.signer.headers("GET", path).items()))
    assert got.status == 200 and got.body == body, got
    listing = f"/{BUCKET}?list-type=2&prefix={quote(key.encode(), safe='~')}&encoding-type=url"
    listed = send(target.port, "GET", listing,
                  list(target.signer.headers("GET", listing).items()))
    assert listed.status == 200, listed
    assert f"<Key>{quote(key.encode(), safe='/')}</Key>".encode() in listed.body, listed
    gone = send(target.port, "DELETE", path,
                list(target.signer.headers("DELETE", path).items()))
    assert gone.status == 204, gone


def test_server_still_serving_after_range_and_key_fuzz(target: Target) -> None:
    target.assert_serving()
