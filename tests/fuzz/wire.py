"""What the fuzz tier sends and what it checks: raw HTTP requests, SigV4 signing
of the valid request each mutation starts from, and the error-form properties.

Requests go over a fresh connection each, with a socket timeout: an answer that
does not come within it is a hang. Signing uses botocore (the client most users
run), so a mutation is the only thing wrong with a request.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import re
from dataclasses import dataclass
from xml.etree import ElementTree

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3 import frontend as _frontend  # noqa: F401  (every S3Error subclass)

REQUEST_TIMEOUT_S = 10.0
HeaderList = list[tuple[str, str | bytes]]


def _s3_table() -> dict[str, int]:
    """Code -> status of every error in THE S3 error table (gateway/s3/errors.py)."""
    table: dict[str, int] = {}
    todo = [s3e.S3Error]
    while todo:
        cls = todo.pop()
        table[cls.code] = cls.status
        todo += cls.__subclasses__()
    return table


S3_ERRORS = _s3_table()
SWIFT_STATUSES = frozenset({200, 201, 202, 204, 206, 304, 400, 401, 403, 404, 405, 408, 409,
                            411, 412, 413, 416, 422, 499, 501, 503})


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # lowercase names
    body: bytes

    def code(self) -> str | None:
        match = re.search(rb"<Code>([^<]*)</Code>", self.body)
        return match.group(1).decode() if match else None


_NOT_IN_FIELDS = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


def field_value(text: str) -> bytes:
    """`text` as an HTTP field value: control characters are not HTTP (aiohttp's parser
    refuses them with its own 400 before any protocol is known), the rest is sent as
    UTF-8, non-ASCII included."""
    return _NOT_IN_FIELDS.sub("", text).encode()


def send(port: int, method: str, target: str, headers: HeaderList, body: bytes = b"",
         timeout_s: float = REQUEST_TIMEOUT_S) -> Answer:
    """One request as given (Host and Content-Length only when absent)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
        names = {name.lower() for name, _ in headers}
        if "host" not in names:
            conn.putheader("Host", f"127.0.0.1:{port}")
        for name, value in headers:
            conn.putheader(name, value)
        if "content-length" not in names and "transfer-encoding" not in names:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body or None)
        resp = conn.getresponse()
        data = resp.read()
        return Answer(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()


def assert_s3_answer(answer: Answer, method: str = "GET") -> None:
    """No 500; an error is S3's XML <Error> with a code of the table and its status."""
    assert answer.status != 500, answer
    assert answer.status < 500 or answer.status in (501, 503), answer
    if answer.status < 300 or answer.status == 304:
        return
    assert "x-amz-request-id" in answer.headers, answer
    if method == "HEAD":
        assert not answer.body
        return
    root = ElementTree.fromstring(answer.body)
    assert root.tag == "Error", answer
    code = root.findtext("Code")
    assert code in S3_ERRORS, f"{code} is not in the S3 error table: {answer}"
    expected = S3_ERRORS[code]
    # MethodNotAllowed also answers a version id naming a delete marker (405 both).
    assert answer.status == expected, f"{code} answered {answer.status}, table says {expected}"


def assert_swift_answer(answer: Answer) -> None:
    assert answer.status != 500, answer
    assert answer.status in SWIFT_STATUSES, answer
    assert "x-trans-id" in answer.headers, answer


class _FixedPayload(S3SigV4Auth):
    """SigV4 over a stated x-amz-content-sha256 (UNSIGNED-PAYLOAD, STREAMING-*, a hash)."""

    def __init__(self, credentials: Credentials, region: str, payload: str) -> None:
        super().__init__(credentials, "s3", region)
        self._payload = payload

    def payload(self, request: AWSRequest) -> str:
        return self._payload


@dataclass(frozen=True)
class Signer:
    port: int
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def headers(self, method: str, target: str, extra: dict[str, str] | None = None,
                payload: str = "UNSIGNED-PAYLOAD") -> dict[str, str]:
        """The signed headers of a request (Host included); `target` is encoded strictly."""
        request = AWSRequest(method=method, url=self.endpoint + target, headers=dict(extra or {}))
        credentials = Credentials(self.access_key, self.secret_key)
        _FixedPayload(credentials, self.region, payload).add_auth(request)
        out = dict(request.headers.items())
        out["Host"] = f"127.0.0.1:{self.port}"
        return out

    def presigned(self, method: str, target: str, expires_s: int = 300) -> str:
        """A presigned target (path and query)."""
        request = AWSRequest(method=method, url=self.endpoint + target)
        S3SigV4QueryAuth(Credentials(self.access_key, self.secret_key), "s3", self.region,
                         expires=expires_s).add_auth(request)
        return request.url[len(self.endpoint):]


def signing_key(secret: str, day: str, region: str = "us-east-1") -> bytes:
    """The SigV4 signing key of `day` (yyyymmdd), for chunk and POST-policy signatures."""
    key = ("AWS4" + secret).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key
