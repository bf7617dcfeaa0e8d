"""The gateway's Prometheus metrics, scraped from a real kurastore server after boto3
requests: requests by protocol, operation and status, latency histograms, body bytes
in and out, and the requests in flight."""

from __future__ import annotations

import re
import socket
import struct
import time
import urllib.request

import pytest
from botocore.exceptions import ClientError

pytestmark = pytest.mark.clients


def _scrape(endpoint: str) -> dict[str, float]:
    """Every sample of the exposition, by its name and labels as written."""
    with urllib.request.urlopen(f"{endpoint}/_kura/metrics", timeout=5) as answer:
        text = answer.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def _sample(samples: dict[str, float], name: str, **labels: str) -> float:
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(v for key, v in samples.items()
               if re.fullmatch(rf"{name}(\{{.*\}})?", key) and all(w in key for w in wanted))


def test_requests_latency_and_bytes_are_counted_by_operation_and_status(
        server, s3, bucket: str) -> None:
    before = _scrape(server.endpoint)
    s3.put_object(Bucket=bucket, Key="m", Body=b"x" * 1000)
    assert s3.get_object(Bucket=bucket, Key="m")["Body"].read() == b"x" * 1000
    with pytest.raises(ClientError):
        s3.get_object(Bucket=bucket, Key="absent")
    after = _scrape(server.endpoint)

    def grew(name: str, **labels: str) -> float:
        return _sample(after, name, **labels) - _sample(before, name, **labels)

    total = "kurastore_requests_total"
    assert grew(total, protocol="s3", op="PutObject", status="200") == 1
    assert grew(total, protocol="s3", op="GetObject", status="200") == 1
    assert grew(total, protocol="s3", op="GetObject", status="404") == 1
    assert grew("kurastore_request_duration_seconds_count", protocol="s3", op="GetObject") == 2
    assert grew("kurastore_request_duration_seconds_bucket", protocol="s3", op="PutObject",
                le="+Inf") == 1
    assert grew("kurastore_request_bytes_total", protocol="s3") >= 1000
    assert grew("kurastore_response_bytes_total", protocol="s3") >= 1000


def test_bytes_out_count_bodies_not_headers(server, s3, bucket: str) -> None:
    s3.put_object(Bucket=bucket, Key="counted", Body=b"y" * 777)
    before = _scrape(server.endpoint)
    s3.put_object(Bucket=bucket, Key="counted", Body=b"y" * 777)  # an answer without a body
    assert s3.get_object(Bucket=bucket, Key="counted")["Body"].read() == b"y" * 777
    s3.head_object(Bucket=bucket, Key="counted")
    after = _scrape(server.endpoint)
    sent = "kurastore_response_bytes_total"
    assert _sample(after, sent, protocol="s3") - _sample(before, sent, protocol="s3") == 777
    # Only the scrape itself may be in flight while it is answered.
    assert after["kurastore_requests_in_flight"] in (0, 1)


def _reset_midway(server, url: str, method: str, body: bytes = b"", declared: int = 0) -> None:
    """Send a request (part of its body, if any), then reset the connection."""
    host, port = server.endpoint.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        # A small receive buffer, so the server is still writing when the client leaves.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        length = f"Content-Length: {declared}\r\n" if declared else ""
        path = url.removeprefix(server.endpoint)
        sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{length}\r\n".encode())
        if body:
            sock.sendall(body)
        else:
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
            time.sleep(0.5)  # the server fills the buffers and waits for the client to read
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _await_499(server, before: dict[str, float], op: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        after = _scrape(server.endpoint)
        left = (_sample(after, "kurastore_requests_total", op=op, status="499")
                - _sample(before, "kurastore_requests_total", op=op, status="499"))
        if left:
            break
        time.sleep(0.1)
    assert left == 1


def _log_since(server, start: int) -> str:
    with open(server.log_path, "rb") as log:
        log.seek(start)
        return log.read().decode(errors="replace")


def test_a_client_leaving_mid_download_is_a_499_not_a_server_error(
        server, s3, bucket: str) -> None:
    data = b"z" * (8 << 20)
    s3.put_object(Bucket=bucket, Key="big", Body=data)
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "big"})
    before, log_start = _scrape(server.endpoint), server.log_path.stat().st_size
    _reset_midway(server, url, "GET")
    _await_499(server, before, "GetObject")
    written = _log_since(server, log_start)
    assert "Traceback" not in written and "Error handling request" not in written
    assert s3.get_object(Bucket=bucket, Key="big")["Body"].read() == data  # still served


def test_an_upload_cut_off_half_way_is_a_499_and_stores_nothing(
        server, s3, bucket: str) -> None:
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": "cut"})
    before, log_start = _scrape(server.endpoint), server.log_path.stat().st_size
    _reset_midway(server, url, "PUT", body=b"y" * (5 << 20), declared=10 << 20)
    _await_499(server, before, "PutObject")
    written = _log_since(server, log_start)
    assert "Traceback" not in written and "Error handling request" not in written
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="cut")


@pytest.mark.parametrize("request_bytes", [
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",  # a negative length
    b"GET / HTTP/1.1\r\nHo st: x\r\n\r\n",  # a space in a header name
    b"GET /\x01bad HTTP/1.1\r\nHost: x\r\n\r\n",  # a control character in the target
])
def test_a_malformed_request_is_a_400_not_a_logged_server_error(
        server, s3, bucket: str, request_bytes: bytes) -> None:
    log_start = server.log_path.stat().st_size
    host, port = server.endpoint.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request_bytes)
        answer = sock.recv(65536)
    assert re.match(rb"HTTP/1\.[01] 400 ", answer), answer  # aiohttp answers in HTTP/1.0
    s3.put_object(Bucket=bucket, Key="after-malformed", Body=b"ok")  # still serving
    written = _log_since(server, log_start)
    assert "Traceback" not in written and "level=ERROR" not in written, written


def test_the_buffer_budgets_are_exported_and_empty_when_idle(server, s3, bucket: str) -> None:
    # A streamed upload (above the 2 MiB burst size) and a read of it: both budgets
    # are charged while they run and given back in full once they are answered.
    body = bytes(range(256)) * (12 << 12)  # 12 MiB
    s3.put_object(Bucket=bucket, Key="budget", Body=body)
    assert s3.get_object(Bucket=bucket, Key="budget")["Body"].read() == body
    samples = _scrape(server.endpoint)
    for name in ("kurastore_read_buffer_bytes", "kurastore_write_buffer_bytes",
                 "kurastore_write_buffer_waits", "kurastore_write_buffer_wait_timeouts"):
        assert name in samples
    assert samples["kurastore_read_buffer_bytes"] == 0
    assert samples["kurastore_write_buffer_bytes"] == 0
    assert samples["kurastore_write_buffer_wait_timeouts"] == 0
