"""Loopback ports for processes that are started now and bind later.

A port found by binding port 0 comes from the kernel's ephemeral range, the
same range it hands to every outgoing connection and to every other bind(0).
Between the moment it is picked and the moment the child binds it, another
process can take it (a CI run lost a server start to exactly that). So ports
are drawn at random from outside that range, where the kernel never assigns
one by itself, and a port handed out once is not handed out again by this
process.
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_LOWEST = 10000  # below this sit the well-known services (PostgreSQL, etcd, ...)
_ATTEMPTS = 200

_handed_out: set[int] = set()
_lock = threading.Lock()
_random = random.Random()  # its own state: tests that seed `random` do not pick ports


def free_port(host: str = "127.0.0.1") -> int:
    """A port on `host` that nothing is bound to now and the kernel will not give
    to an outgoing connection or to bind(0) (falls back to bind(0) if none is found)."""
    spans = _spans_outside_ephemeral()
    with _lock:
        for _ in range(_ATTEMPTS if spans else 0):
            low, high = _random.choice(spans)
            port = _random.randint(low, high)
            if port not in _handed_out and _bindable(host, port):
                _handed_out.add(port)
                return port
        port = _bind_any(host)
        _handed_out.add(port)
        return port


def _spans_outside_ephemeral() -> list[tuple[int, int]]:
    try:
        low, high = (int(v) for v in _RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    spans = [(_LOWEST, low - 1), (high + 1, 65535)]
    return [(a, b) for a, b in spans if b - a >= 1000]


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port (0: any), not yet listening, with SO_REUSEADDR
    as servers set it ("" or "::" take every address family the host has). Raises
    OSError."""
    if host in ("", "::") and socket.has_dualstack_ipv6():
        family, address = socket.AF_INET6, ("::", port)
    else:
        family, _, _, _, found = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        address = (str(found[0]), int(found[1]))
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Reuse: a port whose old connections linger in TIME_WAIT is free for a server.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:  # "::" and "" mean IPv4 too
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY,
                            0 if host in ("", "::") else 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _bindable(host: str, port: int) -> bool:
    try:
        bind_socket(host, port).close()
    except OSError:
        return False
    return True


def _bind_any(host: str) -> int:
    with bind_socket(host, 0) as sock:
        return int(sock.getsockname()[1])
