"""The TCP proxy the partition test falls back on (tests/support/tcpproxy.py), against a
real echo server: it forwards, blackholes (accepts, never answers) and resets, and
forwards again once the cut is healed."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest
from support.tcpproxy import TcpProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = TcpProxy("127.0.0.1", server.server_address[1]).start()
    try:
        yield proxy
    finally:
        proxy.stop()
        server.shutdown()
        server.server_close()


def echo(proxy: TcpProxy, payload: bytes, timeout_s: float = 2.0) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=timeout_s) as conn:
        conn.sendall(payload)
        return conn.recv(65536)


def test_pass_blackhole_reset_and_heal(proxy: TcpProxy) -> None:
    assert echo(proxy, b"hello") == b"hello"
    live = socket.create_connection(("127.0.0.1", proxy.port), timeout=0.5)
    live.sendall(b"before")
    assert live.recv(100) == b"before"

    proxy.set_mode("blackhole")
    live.sendall(b"during")
    with pytest.raises(TimeoutError):
        live.recv(100)  # a connection in flight hangs
    with pytest.raises(TimeoutError):
        echo(proxy, b"new", timeout_s=0.5)  # a new one is accepted, never answered

    proxy.set_mode("reset")
    with pytest.raises((ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        echo(proxy, b"x" * 10)
        echo(proxy, b"x" * 10)  # a reset may surface on the first read or the next send

    proxy.set_mode("pass")
    assert echo(proxy, b"again") == b"again"
    live.close()
