"""Fuzz SigV4: mutated Authorization headers, x-amz-date and x-amz-content-sha256
values, and presigned query strings. Every answer is S3's XML error with a code
of the table and its status (or a success when the mutation left the request
valid); nothing answers 500, nothing hangs, the server keeps serving."""

from __future__ import annotations

from urllib.parse import quote

from fuzz.target import BUCKET, OBJECT, Target, fuzz_settings
from fuzz.wire import assert_s3_answer, field_value, send
from hypothesis import given
from hypothesis import strategies as st

TARGET = f"/{BUCKET}/{OBJECT}"

# Text clients never send but attackers do: non-ASCII, separators, huge runs.
odd_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=200),
    st.sampled_from(["", " ", ",", "=", "/", "//", "aws4_request", "AWS4-HMAC-SHA256", "s3",
                     "us-east-1", "20260101", "99999999", "20261399T250000Z", "\u00e9\u00e8",
                     "\u2603" * 100, "A" * 9000, "=" * 300, "/" * 300]),
)


@st.composite
def authorization(draw: st.DrawFn, valid: str) -> str:
    """A mutation of a valid Authorization header value."""
    scheme, _, rest = valid.partition(" ")
    fields = [f.strip() for f in rest.split(",")]
    how = draw(st.sampled_from(["truncate", "duplicate", "drop", "replace", "credential",
                                "scheme", "garbage", "reorder"]))
    if how == "truncate":
        return valid[: draw(st.integers(0, len(valid) - 1))]
    if how == "duplicate":
        i = draw(st.integers(0, len(fields) - 1))
        fields.insert(draw(st.integers(0, len(fields))), fields[i])
    elif how == "drop":
        del fields[draw(st.integers(0, len(fields) - 1))]
    elif how == "replace":
        i = draw(st.integers(0, len(fields) - 1))
        name = fields[i].partition("=")[0]
        fields[i] = f"{name}={draw(odd_text)}"
    elif how == "credential":
        parts = fields[0].partition("=")[2].split("/")
        i = draw(st.integers(0, len(parts) - 1))
        parts[i] = draw(odd_text)
        if draw(st.booleans()):
            parts = parts[: draw(st.integers(0, len(parts)))]
        fields[0] = "Credential=" + "/".join(parts)
    elif how == "scheme":
        scheme = draw(odd_text)
    elif how == "garbage":
        return draw(odd_text)
    else:
        fields = draw(st.permutations(fields))
    sep = draw(st.sampled_from([", ", ",", " , ", ";"]))
    return f"{scheme} {sep.join(fields)}"


@given(data=st.data())
@fuzz_settings(100)
def test_mutated_authorization_header(target: Target, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(["GET", "HEAD", "PUT", "DELETE"]))
    # Mutations must never touch the fixture's objects: writes go to a scratch key.
    path = TARGET if method in ("GET", "HEAD") else f"/{BUCKET}/scratch"
    headers = target.signer.headers(method, path)
    headers["Authorization"] = data.draw(authorization(headers["Authorization"]))
    more = data.draw(st.sampled_from(["none", "date", "sha", "date-drop", "sha-drop"]))
    if more == "date":
        headers["X-Amz-Date"] = data.draw(odd_text)
    elif more == "sha":
        headers["X-Amz-Content-SHA256"] = data.draw(odd_text)
    elif more == "date-drop":
        del headers["X-Amz-Date"]
    elif more == "sha-drop":
        del headers["X-Amz-Content-SHA256"]
    pairs = [(name, field_value(value)) for name, value in headers.items()]
    answer = send(target.port, method, path, pairs, b"x" if method == "PUT" else b"")
    assert_s3_answer(answer, method)
    assert answer.status not in (200, 204) or more == "none"


@given(data=st.data())
@fuzz_settings(100)
def test_mutated_presigned_query(target: Target, data: st.DataObject) -> None:
    method = data.draw(st.sampled_from(["GET", "HEAD", "PUT"]))
    path = TARGET if method != "PUT" else f"/{BUCKET}/scratch"
    presigned = target.signer.presigned(method, path, data.draw(st.integers(1, 604800)))
    base, _, query = presigned.partition("?")
    params = [item.partition("=") for item in query.split("&")]
    params = [(name, value) for name, _, value in params]
    how = data.draw(st.sampled_from(["replace", "drop", "duplicate", "truncate", "add"]))
    i = data.draw(st.integers(0, len(params) - 1))
    if how == "replace":
        params[i] = (params[i][0], quote(data.draw(odd_text), safe=""))
    elif how == "drop":
        del params[i]
    elif how == "duplicate":
        params.append((params[i][0], quote(data.draw(odd_text), safe="")))
    elif how == "truncate":
        params[i] = (params[i][0], params[i][1][: data.draw(st.integers(0, 30))])
    else:
        name = data.draw(st.sampled_from(["Signature", "AWSAccessKeyId", "Expires",
                                          "X-Amz-Security-Token", "x-id", "versionId"]))
        params.append((name, quote(data.draw(odd_text), safe="")))
    new_target = base + "?" + "&".join(f"{n}={v}" for n, v in params)
    headers: list[tuple[str, str | bytes]] = []
    if data.draw(st.booleans()):
        headers.append(("Authorization", field_value(data.draw(odd_text))))
    answer = send(target.port, method, new_target, headers, b"x" if method == "PUT" else b"")
    assert_s3_answer(answer, method)


def test_server_still_serving_after_sigv4_fuzz(target: Target) -> None:
    target.assert_serving()
