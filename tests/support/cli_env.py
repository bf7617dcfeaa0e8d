"""Environments for the command-line clients the tests run (aws-cli, the SDKs, rclone), set up
the way a user points them at a kurastore endpoint: keys and endpoint from the
environment, no config file of the machine's user read."""

from __future__ import annotations

import os
from pathlib import Path

from support.cluster import ACCESS_KEY, REGION, SECRET_KEY


def aws_env(home: Path) -> dict[str, str]:
    """aws-cli with the root keys; the endpoint is its --endpoint-url argument."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    }


def sdk_env(home: Path) -> dict[str, str]:
    """An AWS SDK program (Go, Java) with the root keys and region from the environment,
    and no instance metadata service asked for keys."""
    return {
        **aws_env(home),
        "AWS_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def rclone_env(home: Path, endpoint: str) -> dict[str, str]:
    """rclone with one remote, `ks:`, on `endpoint` (path-style, the root keys)."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "RCLONE_CONFIG": str(home / "no-rclone.conf"),
        "RCLONE_CONFIG_KS_TYPE": "s3",
        "RCLONE_CONFIG_KS_PROVIDER": "Other",
        "RCLONE_CONFIG_KS_ENDPOINT": endpoint,
        "RCLONE_CONFIG_KS_ACCESS_KEY_ID": ACCESS_KEY,
        "RCLONE_CONFIG_KS_SECRET_ACCESS_KEY": SECRET_KEY,
        "RCLONE_CONFIG_KS_REGION": REGION,
        "RCLONE_CONFIG_KS_FORCE_PATH_STYLE": "true",
    }
