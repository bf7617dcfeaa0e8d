"""Fuzz PostObject, the browser-form upload: a valid SigV4-signed form, then one
mutation (a field replaced with garbage, dropped or repeated, a policy that is not
base64 or not JSON or of the wrong shape, no file or two, a broken boundary, a
truncated body). The answer is success or S3's XML error, never a 500 or a hang."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from fuzz.target import BUCKET, Target, fuzz_settings
from fuzz.wire import assert_s3_answer, field_value, send, signing_key
from hypothesis import given
from hypothesis import strategies as st

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70), st.text(max_size=12)),
    lambda kids: st.one_of(st.lists(kids, max_size=4),
                           st.dictionaries(st.sampled_from(["expiration", "conditions", "eq",
                                                            "bucket", "key", "$key"]),
                                           kids, max_size=3)),
    max_leaves=15,
)
garbage = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["", "=", "====", "not base64!", "A" * 3000, "${filename}", "../x"]),
    json_values.map(lambda v: base64.b64encode(json.dumps(v).encode()).decode()),
)


def valid_form(target: Target) -> list[tuple[str, bytes]]:
    amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    credential = f"{target.signer.access_key}/{amz_date[:8]}/us-east-1/s3/aws4_request"
    expiration = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
    policy = base64.b64encode(json.dumps({"expiration": expiration, "conditions": [
        {"bucket": BUCKET}, ["starts-with", "$key", "post-"],
        {"x-amz-algorithm": "AWS4-HMAC-SHA256"}, {"x-amz-credential": credential},
        {"x-amz-date": amz_date}, ["content-length-range", 0, 10000]]}).encode()).decode()
    key = signing_key(target.signer.secret_key, amz_date[:8])
    signature = hmac.new(key, policy.encode(), hashlib.sha256).hexdigest()
    return [("key", b"post-${filename}"), ("x-amz-algorithm", b"AWS4-HMAC-SHA256"),
            ("x-amz-credential", credential.encode()), ("x-amz-date", amz_date.encode()),
            ("policy", policy.encode()), ("x-amz-signature", signature.encode()),
            ("file", b"hello form")]


def encode(fields: list[tuple[str, bytes]], boundary: str) -> bytes:
    out = []
    for name, value in fields:
        disposition = f'form-data; name="{name}"'
        if name == "file":
            disposition += '; filename="upload.txt"'
        out.append(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
                   + value + b"\r\n")
    return b"".join(out) + f"--{boundary}--\r\n".encode()


@given(how=st.sampled_from(["none", "replace", "drop", "repeat", "no-file", "two-files",
                            "boundary", "truncate", "content-type"]),
       choice=st.data())
@fuzz_settings(80)
def test_mutated_post_form(target: Target, how: str, choice: st.DataObject) -> None:
    fields = valid_form(target)
    boundary = "fuzzboundary42"
    content_type = f"multipart/form-data; boundary={boundary}"
    i = choice.draw(st.integers(0, len(fields) - 2))  # any field but the file
    if how == "replace":
        fields[i] = (fields[i][0], field_value(choice.draw(garbage)))
    elif how == "drop":
        del fields[i]
    elif how == "repeat":
        fields.insert(i, (fields[i][0], field_value(choice.draw(garbage))))
    elif how == "no-file":
        fields.pop()
    elif how == "two-files":
        fields.append(("file", b"again"))
    body = encode(fields, boundary)
    if how == "boundary":
        body = body.replace(boundary.encode(), choice.draw(st.binary(min_size=1, max_size=8)), 1)
    elif how == "truncate":
        body = body[: choice.draw(st.integers(0, len(body) - 1))]
    elif how == "content-type":
        content_type = choice.draw(st.sampled_from([
            "multipart/form-data", "multipart/form-data; boundary=", "text/plain",
            "multipart/form-data; boundary=" + "b" * 200, "multipart/mixed; boundary=x"]))
    answer = send(target.port, "POST", f"/{BUCKET}",
                  [("Content-Type", content_type)], body)
    assert_s3_answer(answer, "POST")
    if how == "none":
        assert answer.status == 204, answer


def test_server_still_serving_after_post_fuzz(target: Target) -> None:
    target.assert_serving()
