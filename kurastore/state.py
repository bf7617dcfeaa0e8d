"""The embedded server's state file: secrets and root keys generated on first
start and kept (mode 0600) in <data>/kurastore.json, so restarts keep every
object and every key."""

from __future__ import annotations

import json
import os
import secrets
import string
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_FILE = "kurastore.json"
ACCESS_KEY_ALPHABET = string.ascii_uppercase + string.digits
SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"


def new_access_key() -> str:
    return "KS" + "".join(secrets.choice(ACCESS_KEY_ALPHABET) for _ in range(18))


def new_secret_key() -> str:
    return "".join(secrets.choice(SECRET_ALPHABET) for _ in range(40))


@dataclass
class ServerState:
    cluster_secret: str  # hex
    metadata_key: str  # hex, 32 bytes
    access_key: str
    secret_key: str
    version: int = 1

    @classmethod
    def create(cls) -> ServerState:
        return cls(
            cluster_secret=secrets.token_hex(32),
            metadata_key=secrets.token_hex(32),
            access_key=new_access_key(),
            secret_key=new_secret_key(),
        )


def load_or_create(data_dir: Path) -> tuple[ServerState, bool]:
    """The state of `data_dir`, creating it on first start. Returns (state, created)."""
    path = data_dir / STATE_FILE
    if path.exists():
        raw = json.loads(path.read_text())
        return ServerState(**raw), False
    state = ServerState.create()
    save(data_dir, state)
    return state, True


def save(data_dir: Path, state: ServerState) -> None:
    path = data_dir / STATE_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(state), f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_secret_file(path: Path, secret: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
