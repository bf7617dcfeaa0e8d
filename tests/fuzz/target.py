"""The fuzz tier's shared values: the target server, its fixture objects, and the
hypothesis settings (derandomized and database-less, so a CI run is the same every
time; KURASTORE_FUZZ_EXAMPLES=N, read once at import, makes a long random run of
N examples per property)."""

from __future__ import annotations

import os
import random
import re
import urllib.request
from dataclasses import dataclass

from fuzz.wire import Signer
from hypothesis import HealthCheck, settings
from support.cluster import ServerProcess

EXAMPLES = int(os.environ.get("KURASTORE_FUZZ_EXAMPLES", "0") or 0)
LONG_RUN = EXAMPLES > 0

BUCKET = "fuzzbucket"
OBJECT = "small"
OBJECT_BODY = bytes(range(256)) * 40  # 10,240 bytes: stored inline
LARGE = "large"
LARGE_BODY = random.Random(9).randbytes(100_000)  # over the inline threshold: shards


def fuzz_settings(default_examples: int) -> settings:
    """The settings of one property: `default_examples` in the default run."""
    return settings(
        max_examples=EXAMPLES or default_examples,
        derandomize=not LONG_RUN,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                               HealthCheck.filter_too_much],
    )


@dataclass
class Target:
    server: ServerProcess
    signer: Signer
    swift_token: str
    swift_account: str  # "/v1/AUTH_<id>"

    @property
    def port(self) -> int:
        return self.server.port

    def assert_serving(self) -> None:
        """The process is alive, ready, and never answered 500."""
        assert self.server.process is not None and self.server.process.poll() is None
        with urllib.request.urlopen(f"{self.server.endpoint}/_kura/readyz", timeout=5) as r:
            assert r.status == 200
        assert self.server.log_path is not None
        log = self.server.log_path.read_text(errors="replace")
        failures = re.findall(r".*(?:answered 500|Unhandled exception).*", log)
        assert not failures, "\n".join(failures[:5])
