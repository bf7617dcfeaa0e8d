"""Integration tests run real processes: each test gets its own kurastore server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.cluster import ServerProcess


@pytest.fixture
def fresh_server(tmp_path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "data")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
