"""Receive buffers: the right size, writable in place, independent of each other."""

from __future__ import annotations

import os

import pytest

from kurastore.storage._buffers import receive_buffer


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 256 << 10, 4 << 20])
def test_a_buffer_of_the_asked_size_takes_bytes_in_place(size: int) -> None:
    buf = receive_buffer(size)
    assert isinstance(buf, bytearray) and len(buf) == size
    data = os.urandom(size)
    view = memoryview(buf)
    view[: size // 2] = data[: size // 2]  # as a socket fills it, in pieces
    view[size // 2 :] = data[size // 2 :]
    assert bytes(buf) == data


def test_buffers_do_not_share_memory() -> None:
    a, b = receive_buffer(1 << 20), receive_buffer(1 << 20)
    a[:] = b"a" * len(a)
    b[:] = b"b" * len(b)
    assert a == b"a" * len(a) and b == b"b" * len(b)
    a.extend(b"more")  # an ordinary bytearray: it can grow
    assert len(a) == (1 << 20) + 4
