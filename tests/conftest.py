"""Shared test setup: makes tests/support importable as `support`, and clears
KURASTORE_* variables so no test depends on the developer's environment."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("KURASTORE_"):
            monkeypatch.delenv(name, raising=False)
