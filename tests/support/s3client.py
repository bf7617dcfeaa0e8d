"""boto3 clients configured for a kurastore endpoint, as a user would."""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request

import boto3
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from support.cluster import ACCESS_KEY, REGION, SECRET_KEY


def make_client(endpoint: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY,
                **config: object):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=REGION,
        config=Config(retries={"max_attempts": 2, "mode": "standard"}, **config),
    )


def error_code(exc: ClientError) -> str:
    return exc.response["Error"]["Code"]


def signed_put(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """A PUT of exactly these bytes and headers, SigV4-signed with the root keys (what
    boto3 would refuse to send: malformed documents, a wrong Content-MD5):
    (status, body)."""
    request = AWSRequest(method="PUT", url=url, data=body, headers=headers or {})
    request.headers["x-amz-content-sha256"] = hashlib.sha256(body).hexdigest()
    S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(request)
    prepared = urllib.request.Request(url, data=body, method="PUT",
                                      headers=dict(request.headers.items()))
    try:
        with urllib.request.urlopen(prepared) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
