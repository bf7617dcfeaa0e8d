"""ErasureParams: the geometry of a part's erasure code, and the sizes that follow from it.

A part of `size` bytes is cut into stripes of stripe_size = k * block_size bytes; the last
stripe may be short (1..stripe_size bytes) and then has short blocks of ceil(len / k) bytes.
Each stripe becomes k + m frames, one per shard. Everything here is arithmetic on those
rules; the frame layout itself lives in _frame.

Bounds: 1 <= k <= 32 (k = 1 is plain replication, m + 1 copies), 1 <= m <= 16, block_size
a positive multiple of 64 bytes up to 64 MiB. zfec itself takes any block length; 64 keeps
every block of a full stripe cache-line aligned inside the stripe buffer and makes whole
64-byte XXH3 stripes. The bounds keep every field inside the frame header's integer widths
(k + m <= 256 in one byte each, stripe data length < 2**32).
"""

from __future__ import annotations

from dataclasses import dataclass

from kurastore.erasure._errors import InvalidParams
from kurastore.erasure._frame import FRAME_HEADER_SIZE

__all__ = ["BLOCK_ALIGN", "MAX_BLOCK_SIZE", "MAX_K", "MAX_M", "ErasureParams"]

MAX_K = 32
MAX_M = 16
BLOCK_ALIGN = 64
MAX_BLOCK_SIZE = 64 << 20


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParams(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise InvalidParams(f"{name}={value} is out of range {low}..{high}")


@dataclass(frozen=True)
class ErasureParams:
    """k data blocks + m parity blocks of block_size bytes per stripe.

    >>> p = ErasureParams.for_stripe(4, 2)            # 1 MiB stripes
    >>> p.block_size, p.stripe_size, p.frame_size
    (262144, 1048576, 262176)
    >>> p.stripe_count(2_500_000), p.shard_size(2_500_000)  # 2 full stripes + 402848 bytes
    (3, 625096)
    """

    k: int
    m: int
    block_size: int

    def __post_init__(self) -> None:
        _check_int("k", self.k, 1, MAX_K)
        _check_int("m", self.m, 1, MAX_M)
        _check_int("block_size", self.block_size, BLOCK_ALIGN, MAX_BLOCK_SIZE)
        if self.block_size % BLOCK_ALIGN:
            raise InvalidParams(
                f"block_size={self.block_size} is not a multiple of {BLOCK_ALIGN}"
            )

    @classmethod
    def for_stripe(cls, k: int, m: int, stripe_size: int = 1 << 20) -> ErasureParams:
        """Params whose stripe holds at least `stripe_size` bytes: the block size is
        ceil(stripe_size / k) rounded up to BLOCK_ALIGN (so stripe_size may grow a little:
        for_stripe(3, 2).stripe_size == 1048704)."""
        _check_int("k", k, 1, MAX_K)
        _check_int("stripe_size", stripe_size, 1, MAX_K * MAX_BLOCK_SIZE)
        block = -(-stripe_size // k)
        block = -(-block // BLOCK_ALIGN) * BLOCK_ALIGN
        return cls(k=k, m=m, block_size=block)

    @property
    def width(self) -> int:
        """Blocks (and shards) per stripe: k + m."""
        return self.k + self.m

    @property
    def stripe_size(self) -> int:
        """Object-data bytes in a full stripe."""
        return self.k * self.block_size

    @property
    def frame_size(self) -> int:
        """Bytes of a full stripe's frame in a shard file."""
        return FRAME_HEADER_SIZE + self.block_size

    def stripe_count(self, size: int) -> int:
        """Stripes of a part of `size` bytes (0 for an empty part)."""
        _check_size(size)
        return -(-size // self.stripe_size)

    def stripe_data_len(self, size: int, stripe: int) -> int:
        """Object-data bytes of stripe number `stripe` of a part of `size` bytes."""
        count = self.stripe_count(size)
        if not 0 <= stripe < count:
            raise ValueError(f"stripe {stripe} is outside a {size}-byte part ({count} stripes)")
        return min(self.stripe_size, size - stripe * self.stripe_size)

    def block_len(self, data_len: int) -> int:
        """Block (payload) bytes of a stripe holding `data_len` bytes: ceil(data_len / k)."""
        return -(-data_len // self.k)

    def shard_size(self, size: int) -> int:
        """Bytes of one shard file for a part of `size` bytes; the same for every index."""
        _check_size(size)
        full, rest = divmod(size, self.stripe_size)
        last = FRAME_HEADER_SIZE + self.block_len(rest) if rest else 0
        return full * self.frame_size + last


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise ValueError(f"part size must be a non-negative integer, got {size!r}")
