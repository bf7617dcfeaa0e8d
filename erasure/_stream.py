"""Streaming: cut a body arriving in arbitrary chunks into stripes, and encode them.

StripeCutter turns chunks of any size into whole stripes of stripe_size bytes plus, at the
end, the short last stripe. It copies as little as it can: while no partial stripe is
pending, whole stripes inside an immutable chunk (bytes, or a view of bytes) come out as
views of that chunk; only the bytes that straddle chunk boundaries are copied, once, into a
stripe buffer that is then handed over (read-only) and never reused.

StreamEncoder is the cutter plus encode_stripe, numbering stripes from 0 (or a given first
stripe). Both are plain synchronous objects: callers that must not block an event loop run
encode_stripe in their executor and use StripeCutter alone.
"""

from __future__ import annotations

from kurastore.erasure._codec import encode_stripe
from kurastore.erasure._frame import byte_view
from kurastore.erasure._params import ErasureParams

__all__ = ["StreamEncoder", "StripeCutter"]

Buffer = bytes | bytearray | memoryview


class StripeCutter:
    """Feed chunks, get whole stripes; finish() gives the short last stripe, if any.

    Stripes are read-only memoryviews; they stay valid however later chunks are fed. A
    chunk that is not bytes (a bytearray, or any view of one) is copied, so the caller may
    reuse it.
    """

    def __init__(self, params: ErasureParams) -> None:
        self._stripe_size = params.stripe_size
        self._pending: bytearray | None = None  # the partial stripe being filled
        self._filled = 0
        self._size = 0
        self._finished = False

    @property
    def size(self) -> int:
        """Bytes fed so far."""
        return self._size

    @property
    def room(self) -> int:
        """Bytes that complete the stripe being cut (a whole stripe when none is)."""
        return self._stripe_size - self._filled

    def feed(self, chunk: Buffer) -> list[memoryview]:
        """Take a chunk of the body; return the stripes it completed, in order."""
        if self._finished:
            raise ValueError("StripeCutter.feed() after finish()")
        view = byte_view(chunk)
        self._size += len(view)
        stripes: list[memoryview] = []
        pos = 0
        if self._filled:
            pos = self._fill(view)
            if self._filled == self._stripe_size:
                stripes.append(self._take())
        size = self._stripe_size
        if isinstance(view.obj, bytes):
            # Whole stripes straight out of an immutable chunk: no copy at all.
            while len(view) - pos >= size:
                stripes.append(view[pos : pos + size])
                pos += size
        else:
            while len(view) - pos >= size:
                stripes.append(memoryview(bytes(view[pos : pos + size])))
                pos += size
        if pos < len(view):
            self._fill(view[pos:])
        return stripes

    def finish(self) -> bytes | None:
        """End of the body: the short last stripe (1..stripe_size-1 bytes) or None."""
        self._finished = True
        if not self._filled:
            return None
        assert self._pending is not None
        last = bytes(memoryview(self._pending)[: self._filled])
        self._pending, self._filled = None, 0
        return last

    def _fill(self, view: memoryview) -> int:
        """Copy from `view` into the pending stripe; return how many bytes were taken."""
        if self._pending is None:
            self._pending = bytearray(self._stripe_size)
        take = min(len(view), self._stripe_size - self._filled)
        self._pending[self._filled : self._filled + take] = view[:take]
        self._filled += take
        return take

    def _take(self) -> memoryview:
        assert self._pending is not None
        stripe = memoryview(self._pending).toreadonly()
        self._pending, self._filled = None, 0
        return stripe


class StreamEncoder:
    """Feed chunks, get (stripe number, k + m frames) for every stripe completed."""

    def __init__(self, params: ErasureParams, first_stripe: int = 0) -> None:
        self._params = params
        self._cutter = StripeCutter(params)
        self._next = first_stripe

    @property
    def size(self) -> int:
        """Bytes fed so far."""
        return self._cutter.size

    @property
    def next_stripe(self) -> int:
        """The number the next stripe will get."""
        return self._next

    def feed(self, chunk: Buffer) -> list[tuple[int, list[bytes]]]:
        return [self._encode(stripe) for stripe in self._cutter.feed(chunk)]

    def finish(self) -> list[tuple[int, list[bytes]]]:
        last = self._cutter.finish()
        return [] if last is None else [self._encode(last)]

    def _encode(self, stripe: Buffer) -> tuple[int, list[bytes]]:
        number = self._next
        self._next += 1
        return number, encode_stripe(self._params, number, stripe)
