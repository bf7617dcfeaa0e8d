"""Slow clients and overload against a real `kurastore server`, over raw sockets.

The server runs with short deadlines (client window 2 s, idle timeout 2 s) and a
small in-flight bound (6 requests, no waiting line), so each behaviour shows in
seconds: a body trickling at 1 KiB/s is cut off with S3's RequestTimeout (Swift's
408), a
client that stops reading a large GET is dropped without the gateway buffering
the object, idle and half-sent connections are closed, other clients keep low
latency meanwhile, and a request beyond the bound is answered 503 SlowDown at
once (Swift's 503 for Swift) while the probes stay exempt.
"""

from __future__ import annotations

import os
import re
import socket
import statistics
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError
from support.cluster import ACCESS_KEY, REGION, SECRET_KEY, ServerProcess
from support.s3client import make_client

WINDOW_S = 2.0
IDLE_S = 2.0
MAX_IN_FLIGHT = 6
BUCKET = "slowclients"
# Large enough that holding it would stand out from the allocator's own noise (~20 MiB).
BIG = 64 << 20


class _UnsignedPayload(S3SigV4Auth):
    def _should_sha256_sign_payload(self, request) -> bool:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("slow") / "data",
        extra_args=["--client-timeout", str(WINDOW_S), "--idle-timeout", str(IDLE_S),
                    "--max-in-flight", str(MAX_IN_FLIGHT), "--max-queued", "0",
                    "--min-body-rate", "4K"],
    )
    proc.start()
    try:
        s3 = make_client(proc.endpoint)
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key="big", Body=os.urandom(BIG))
        # One full read first: the GET path's buffers and threads exist before RSS is compared.
        assert len(s3.get_object(Bucket=BUCKET, Key="big")["Body"].read()) == BIG
        yield proc
    finally:
        proc.stop()


def request_head(server: ServerProcess, method: str, path: str, **headers: str) -> bytes:
    """The head of a SigV4-signed (UNSIGNED-PAYLOAD) request, as bytes for a socket."""
    request = AWSRequest(method=method, url=server.endpoint + path, headers=headers)
    _UnsignedPayload(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(request)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    lines += [f"{name}: {value}" for name, value in request.headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def connect(server: ServerProcess, timeout_s: float = 15.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=timeout_s)
    return sock


def read_answer(sock: socket.socket) -> tuple[int, bytes]:
    """Status and the bytes received until the connection closes or an answer ends."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before an answer: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split()[1]), head + b"\r\n\r\n" + body


def is_closed(sock: socket.socket, wait_s: float) -> bool:
    """True when the server closes the connection within wait_s (reading what is left)."""
    sock.settimeout(wait_s)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


def gateway_rss_mib(server: ServerProcess) -> float:
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024


def metric(server: ServerProcess, name: str, **labels: str) -> float:
    with urllib.request.urlopen(f"{server.endpoint}/_kura/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Trickler(threading.Thread):
    """A PUT declaring 1 MiB that sends 1 KiB per second, and what it got back."""

    def __init__(self, server: ServerProcess, key: str) -> None:
        super().__init__(daemon=True)
        self.sock = connect(server, timeout_s=30)
        self.sock.sendall(request_head(server, "PUT", f"/{BUCKET}/{key}",
                                       **{"Content-Length": str(1 << 20)}))
        self.answer: tuple[int, bytes] | None = None
        self.elapsed_s = 0.0
        self.started = time.monotonic()

    def run(self) -> None:
        self.sock.setblocking(False)
        try:
            while time.monotonic() - self.started < 30:
                try:
                    self.sock.send(b"x" * 1024)
                except BlockingIOError:
                    pass
                time.sleep(1.0)
                try:
                    if self.sock.recv(1, socket.MSG_PEEK):
                        break
                except BlockingIOError:
                    continue
            self.sock.setblocking(True)
            self.sock.settimeout(10)
            self.answer = read_answer(self.sock)
        except OSError:
            pass
        self.elapsed_s = time.monotonic() - self.started


def stalled_get(server: ServerProcess) -> socket.socket:
    """A GET of the big object whose client reads the status line and then stops."""
    sock = connect(server)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    sock.sendall(request_head(server, "GET", f"/{BUCKET}/big"))
    assert sock.recv(12).startswith(b"HTTP/1.1 200")
    return sock


def test_trickling_body_is_cut_off_with_request_timeout(server: ServerProcess) -> None:
    before = metric(server, "kurastore_requests_rejected_total", reason="slow_body")
    trickler = Trickler(server, "trickled")
    trickler.start()
    trickler.join(40)
    assert trickler.answer is not None, "no answer to a body trickling at 1 KiB/s"
    status, raw = trickler.answer
    assert status == 400
    assert b"<Code>RequestTimeout</Code>" in raw
    assert b"not read from or written to within the timeout period" in raw
    assert b"Connection: close" in raw
    # Cut off after about one window (plus the sweeper's tick), not after the 1 MiB.
    assert trickler.elapsed_s < 3 * WINDOW_S + 2
    assert is_closed(trickler.sock, 5)
    s3 = make_client(server.endpoint)
    with pytest.raises(ClientError):
        s3.head_object(Bucket=BUCKET, Key="trickled")
    assert metric(server, "kurastore_requests_rejected_total", reason="slow_body") > before


def test_swift_trickling_body_gets_408(server: ServerProcess) -> None:
    with urllib.request.urlopen(urllib.request.Request(
            f"{server.endpoint}/auth/v1.0",
            headers={"X-Auth-User": ACCESS_KEY, "X-Auth-Key": SECRET_KEY}), timeout=5) as r:
        token, url = r.headers["X-Auth-Token"], r.headers["X-Storage-Url"]
    path = "/" + url.split("/", 3)[3] + f"/{BUCKET}/swift-trickled"
    sock = connect(server, timeout_s=30)
    sock.sendall(f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Auth-Token: {token}\r\n"
                 f"Content-Length: {1 << 20}\r\n\r\n".encode())
    started = time.monotonic()
    sock.settimeout(1.0)
    answer = b""
    while not answer and time.monotonic() - started < 3 * WINDOW_S + 4:
        sock.sendall(b"x" * 1024)
        try:
            answer = sock.recv(65536)
        except TimeoutError:
            continue
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"X-Trans-Id: tx" in answer


def test_stalled_reader_is_dropped_without_buffering_the_object(server: ServerProcess) -> None:
    rss_before = gateway_rss_mib(server)
    sock = stalled_get(server)
    peak = rss_before
    deadline = time.monotonic() + 3 * WINDOW_S + 2
    while time.monotonic() < deadline:
        peak = max(peak, gateway_rss_mib(server))
        time.sleep(0.25)
    received = 0
    sock.settimeout(5)
    try:
        while chunk := sock.recv(1 << 20):
            received += len(chunk)
    except (ConnectionResetError, TimeoutError):
        pass
    sock.close()
    # The gateway gave up on the client: it never sent the whole object...
    assert received < BIG // 2
    # ...and never held it in memory while the client was not reading.
    grew = peak - rss_before
    assert grew < (BIG >> 20) / 2, f"gateway RSS grew {grew:.0f} MiB"
    assert metric(server, "kurastore_requests_rejected_total", reason="stalled_reader") >= 1
    # The connection's request slot was given back: the object is still served in full.
    body = make_client(server.endpoint).get_object(Bucket=BUCKET, Key="big")["Body"].read()
    assert len(body) == BIG


def test_idle_and_half_sent_connections_are_closed(server: ServerProcess) -> None:
    idle = connect(server)
    half = connect(server)
    half.sendall(b"GET /slowclients/big HTTP/1.1\r\nHost: 127.0.0.1\r\nx-amz-da")
    used = connect(server)
    used.sendall(b"GET /_kura/healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert read_answer(used)[0] == 200
    started = time.monotonic()
    for sock in (idle, half, used):
        assert is_closed(sock, IDLE_S + 4), "connection still open after the idle timeout"
        sock.close()
    assert time.monotonic() - started < IDLE_S + 4


def test_other_clients_keep_low_latency_meanwhile(server: ServerProcess) -> None:
    tricklers = [Trickler(server, f"slow-{i}") for i in range(2)]
    for t in tricklers:
        t.start()
    stalled = stalled_get(server)
    s3 = make_client(server.endpoint)
    latencies = []
    body = os.urandom(4096)
    try:
        for i in range(20):
            start = time.monotonic()
            s3.put_object(Bucket=BUCKET, Key=f"small-{i}", Body=body)
            assert s3.get_object(Bucket=BUCKET, Key=f"small-{i}")["Body"].read() == body
            latencies.append(time.monotonic() - start)
    finally:
        stalled.close()
        for t in tricklers:
            t.join(40)
    assert statistics.median(latencies) < 0.3, latencies
    assert max(latencies) < 1.5, latencies
    assert all(t.answer and t.answer[0] == 400 for t in tricklers)


def test_overload_answers_slowdown_at_once(server: ServerProcess) -> None:
    s3 = make_client(server.endpoint)
    s3.put_object(Bucket=BUCKET, Key="probe", Body=b"p" * 4096)
    tricklers = [Trickler(server, f"hold-{i}") for i in range(MAX_IN_FLIGHT)]
    for t in tricklers:
        t.start()
    time.sleep(0.5)  # every slot is held by a trickling body now
    try:
        sock = connect(server)
        started = time.monotonic()
        sock.sendall(request_head(server, "GET", f"/{BUCKET}/probe"))
        status, raw = read_answer(sock)
        elapsed = time.monotonic() - started
        sock.close()
        assert status == 503, raw
        assert b"<Code>SlowDown</Code>" in raw
        assert b"Retry-After: 1" in raw
        assert elapsed < 0.5
        # Swift requests share the bound and get Swift's own 503.
        sock = connect(server)
        sock.sendall(b"GET /info HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, raw = read_answer(sock)
        sock.close()
        assert status == 503 and b"X-Trans-Id: tx" in raw, raw
        # Probes are never refused.
        with urllib.request.urlopen(f"{server.endpoint}/_kura/healthz", timeout=2) as r:
            assert r.status == 200
    finally:
        for t in tricklers:
            t.join(40)
    assert metric(server, "kurastore_requests_rejected_total", reason="overload") >= 1
    # Once the slow bodies are cut off, requests are served again.
    assert s3.head_object(Bucket=BUCKET, Key="probe")["ContentLength"] == 4096
