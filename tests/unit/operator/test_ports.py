"""Ports for processes started now that bind later: never one the kernel hands to
outgoing connections or bind(0), never one in use, never the same one twice."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from kurastore.operator.platforms import ports
from kurastore.operator.platforms.ports import free_port


def ephemeral_range() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def test_ports_are_outside_the_ephemeral_range_and_bindable() -> None:
    low, high = ephemeral_range()
    picked = [free_port() for _ in range(200)]
    assert len(set(picked)) == len(picked)
    for port in picked:
        assert not low <= port <= high
        with socket.create_server(("127.0.0.1", port)):  # free to bind, and listen on
            pass


def test_a_port_in_use_is_passed_over(monkeypatch: pytest.MonkeyPatch) -> None:
    busy = socket.create_server(("127.0.0.1", 0))
    taken = busy.getsockname()[1]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))  # some other port, free again once closed
        spare = probe.getsockname()[1]
    # The draw offers the busy port first, then a free one.
    draws = iter([taken, spare])
    monkeypatch.setattr(ports._random, "randint", lambda _a, _b: next(draws))
    try:
        assert free_port() == spare
    finally:
        busy.close()
