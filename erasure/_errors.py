"""The errors of the erasure codec: one tree, rooted in ErasureError.

    ErasureError
     ├── InvalidParams          k, m or block size out of range (also a ValueError)
     ├── FrameCorrupt           a frame failed its checks; names the shard index and stripe
     │    └── UnknownFrameVersion   the header's version byte is not one this code reads
     ├── NotEnoughBlocks        fewer than k valid frames for a stripe
     └── StripeMismatch         frames of different stripes or geometry given together

Rule: every error carries the facts a caller needs to act (which shard to heal, which
stripe), as attributes as well as in the message. Nothing here knows about HTTP or S3.
"""

from __future__ import annotations

__all__ = [
    "ErasureError",
    "FrameCorrupt",
    "InvalidParams",
    "NotEnoughBlocks",
    "StripeMismatch",
    "UnknownFrameVersion",
]


class ErasureError(Exception):
    """Base of every error raised by kurastore.erasure."""

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only attributes survive pickling (a process pool sends errors back).
        return (_restore, (type(self), self.args, dict(self.__dict__)))


def _restore(cls: type[ErasureError], args: tuple[object, ...], state: dict) -> ErasureError:
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(state)
    return exc


class InvalidParams(ErasureError, ValueError):
    """k, m or the block size is outside what the codec and the frame format support."""


def _where(index: int | None, stripe: int | None) -> str:
    shard = "?" if index is None else str(index)
    stripe_no = "?" if stripe is None else str(stripe)
    return f"shard index {shard}, stripe {stripe_no}"


class FrameCorrupt(ErasureError):
    """A frame failed a check (magic, length, checksum, expected index/stripe/geometry).

    `index` and `stripe` say which block it is when known: the caller's expectation if it
    gave one, else what the header claims (possibly itself corrupt), else None.
    """

    def __init__(
        self, reason: str, *, index: int | None = None, stripe: int | None = None
    ) -> None:
        self.reason = reason
        self.index = index
        self.stripe = stripe
        super().__init__(f"corrupt frame ({_where(index, stripe)}): {reason}")


class UnknownFrameVersion(FrameCorrupt):
    """The frame's version byte names a format this code does not know."""

    def __init__(
        self, version: int, *, index: int | None = None, stripe: int | None = None
    ) -> None:
        self.version = version
        super().__init__(f"unknown frame format version {version}", index=index, stripe=stripe)


class NotEnoughBlocks(ErasureError):
    """Fewer than k valid frames were given for a stripe: it cannot be rebuilt."""

    def __init__(self, *, stripe: int | None, have: int, need: int) -> None:
        self.stripe = stripe
        self.have = have
        self.need = need
        where = "?" if stripe is None else str(stripe)
        super().__init__(
            f"stripe {where}: {have} valid block(s), need at least {need} to rebuild it"
        )


class StripeMismatch(ErasureError):
    """Frames given together do not belong to one stripe of one geometry."""
