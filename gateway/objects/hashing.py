"""BodyHasher: the MD5 (ETag) and the requested checksums of a body, in order.

Rules:
- Updates are applied strictly in body order: callers await `update` before
  handing the next piece, so the digests match what was received.
- A piece of `offload_bytes` or more is hashed in the CPU executor (hashlib and
  the CRC libraries release the GIL); smaller ones on the loop, where an
  executor round trip would cost more than the hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from kurastore.gateway.objects.api import BodyDigest
from kurastore.gateway.objects.checksums import new_hasher
from kurastore.gateway.objects.errors import InvalidArgument
from kurastore.gateway.objects.executor import CpuPool


class BodyHasher:
    def __init__(self, algorithms: Sequence[str], cpu: CpuPool, offload_bytes: int) -> None:
        self._md5 = hashlib.md5()
        self._checksums = {}
        for algorithm in dict.fromkeys(a.upper() for a in algorithms):
            try:
                self._checksums[algorithm] = new_hasher(algorithm)
            except (KeyError, ValueError) as exc:
                raise InvalidArgument(f"unknown checksum algorithm {algorithm!r}") from exc
        self._cpu = cpu
        self._offload_bytes = offload_bytes
        self.size = 0

    def _update(self, data: bytes | memoryview) -> None:
        self._md5.update(data)
        for hasher in self._checksums.values():
            hasher.update(data)

    def update_here(self, data: bytes | memoryview) -> None:
        """Hash the next piece in the calling thread (a worker already off the loop)."""
        self.size += len(data)
        self._update(data)

    async def update(self, data: bytes | memoryview) -> None:
        self.size += len(data)
        if len(data) >= self._offload_bytes:
            await self._cpu.run(self._update, data)
        else:
            self._update(data)

    def digest(self) -> BodyDigest:
        return BodyDigest(
            size=self.size,
            md5=self._md5.digest(),
            checksums={name: hasher.b64() for name, hasher in self._checksums.items()},
        )
