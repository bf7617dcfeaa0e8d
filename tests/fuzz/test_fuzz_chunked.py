"""Fuzz aws-chunked bodies: a valid signed (or unsigned-trailer) body, then one
mutation of its framing: bad hex sizes, missing or doubled CRLF, wrong chunk
signatures, truncated or garbage trailers, a bad trailer checksum, extra data.
The answer is success (when the mutation left it valid) or S3's XML error; a
mutated body never stores a wrong object."""

from __future__ import annotations

import base64
import hashlib
import hmac
import zlib

from fuzz.target import BUCKET, Target, fuzz_settings
from fuzz.wire import assert_s3_answer, send, signing_key
from hypothesis import given
from hypothesis import strategies as st

SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def frame(data: bytes, sizes: list[int], mode: str, key: bytes, amz_date: str, seed: str,
          trailer: tuple[str, str] | None) -> list[bytes]:
    """The body's pieces (one per chunk line, data, CRLF...) so a mutation can hit one."""
    scope = f"{amz_date[:8]}/us-east-1/s3/aws4_request"
    previous, pieces, offset = seed, [], 0
    for size in [*sizes, 0]:
        chunk = data[offset:offset + size]
        offset += size
        header = f"{len(chunk):x}"
        if mode != UNSIGNED_TRAILER:
            text = (f"AWS4-HMAC-SHA256-PAYLOAD\n{amz_date}\n{scope}\n{previous}\n"
                    f"{EMPTY_SHA256}\n{hashlib.sha256(chunk).hexdigest()}")
            previous = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
            header += f";chunk-signature={previous}"
        pieces += [header.encode() + b"\r\n", chunk]
        if size:
            pieces.append(b"\r\n")
    if trailer is not None:
        name, value = trailer
        pieces.append(f"{name}:{value}\r\n".encode())
        if mode == SIGNED_TRAILER:
            digest = hashlib.sha256(f"{name}:{value}\n".encode()).hexdigest()
            text = f"AWS4-HMAC-SHA256-TRAILER\n{amz_date}\n{scope}\n{previous}\n{digest}"
            sig = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
            pieces.append(f"x-amz-trailer-signature:{sig}\r\n".encode())
    pieces.append(b"\r\n")
    return pieces


MUTATIONS = ["none", "size-garbage", "size-wrong", "drop-crlf", "double-crlf", "chunk-sig",
             "truncate", "trailer-garbage", "trailer-value", "extra-data", "drop-piece",
             "insert-bytes"]


@given(
    data=st.binary(min_size=0, max_size=3000),
    cuts=st.lists(st.integers(1, 1200), max_size=4),
    mode=st.sampled_from([SIGNED, SIGNED_TRAILER, UNSIGNED_TRAILER]),
    mutation=st.sampled_from(MUTATIONS),
    choice=st.data(),
)
@fuzz_settings(100)
def test_mutated_aws_chunked_body(target: Target, data: bytes, cuts: list[int], mode: str,
                                  mutation: str, choice: st.DataObject) -> None:
    sizes, left = [], len(data)
    for cut in cuts:
        if left <= 0:
            break
        sizes.append(min(cut, left))
        left -= sizes[-1]
    if left:
        sizes.append(left)
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    trailer = None if mode == SIGNED else ("x-amz-checksum-crc32", crc)
    key_name = f"chunked-{mutation}"
    path = f"/{BUCKET}/{key_name}"
    extra = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data))}
    if trailer is not None:
        extra["x-amz-trailer"] = trailer[0]
    headers = target.signer.headers("PUT", path, extra, payload=mode)
    amz_date = headers["X-Amz-Date"]
    seed = headers["Authorization"].rsplit("Signature=", 1)[1]
    key = signing_key(target.signer.secret_key, amz_date[:8])
    pieces = frame(data, sizes, mode, key, amz_date, seed, trailer)
    i = choice.draw(st.integers(0, len(pieces) - 1))
    garbage = choice.draw(st.binary(min_size=1, max_size=40))
    if mutation == "size-garbage":
        line_ids = [j for j, p in enumerate(pieces) if (p.endswith(b"\r\n") and b";" in p)
                    or (mode == UNSIGNED_TRAILER and j % 3 == 0)]
        j = choice.draw(st.sampled_from(line_ids or [0]))
        pieces[j] = garbage + pieces[j][pieces[j].find(b";") if b";" in pieces[j] else -2:]
    elif mutation == "size-wrong":
        size = choice.draw(st.integers(0, 1 << 64))
        rest = pieces[0].split(b";", 1)
        pieces[0] = f"{size:x}".encode() + (b";" + rest[1] if len(rest) > 1 else b"\r\n")
    elif mutation == "drop-crlf":
        pieces[i] = pieces[i].replace(b"\r\n", b"", 1)
    elif mutation == "double-crlf":
        pieces[i] += b"\r\n"
    elif mutation == "chunk-sig":
        pieces[i] = pieces[i].replace(b"chunk-signature=", b"chunk-signature=0", 1)
    elif mutation == "truncate":
        pieces = pieces[:i]
    elif mutation == "trailer-garbage" and trailer is not None:
        pieces.insert(-1, garbage.replace(b"\r\n", b"") + b"\r\n")
    elif mutation == "trailer-value" and trailer is not None:
        value = choice.draw(st.sampled_from(["", "AAAA", "not base64!", "A" * 5000, crc[::-1]]))
        pieces = frame(data, sizes, mode, key, amz_date, seed, (trailer[0], value))
    elif mutation == "extra-data":
        pieces.append(garbage)
    elif mutation == "drop-piece":
        del pieces[i]
    elif mutation == "insert-bytes":
        pieces.insert(i, garbage)
    body = b"".join(pieces)
    answer = send(target.port, "PUT", path, list(headers.items()), body)
    assert_s3_answer(answer, "PUT")
    if mutation == "none":
        assert answer.status == 200, answer
    if answer.status == 200:
        # Whatever was accepted is exactly the data that was signed.
        got = send(target.port, "GET", path, list(target.signer.headers("GET", path).items()))
        assert got.status == 200 and got.body == data


def test_server_still_serving_after_chunked_fuzz(target: Target) -> None:
    target.assert_serving()
