"""boto3 clients configured for a kurastore endpoint, as a user would."""

from __future__ import annotations

import boto3
from botocore.config import Config
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
