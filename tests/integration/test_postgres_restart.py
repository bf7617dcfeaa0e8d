"""PostgreSQL restarted under load: two gateways on one private server, boto3 clients
writing and reading through both while the database stops (fast shutdown) for ~5 s
and starts again. While it is away the gateways answer 503 (SlowDown or
ServiceUnavailable, with Retry-After) at once, never a 500 or a hang; afterwards
they serve again by themselves; every acknowledged object reads back, and nothing
half-written is visible."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from support.cluster import ACCESS_KEY, REGION, SECRET_KEY
from support.postgres import GatewayProcess, PostgresCluster

pytestmark = pytest.mark.integration

DOWN_S = 5.0
ANSWER_WITHIN_S = 5.0  # while the database is away: answered (connect timeout: 10 s)


def client(endpoint: str):
    """No retries: the test sees every answer the gateway gives."""
    return boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, region_name=REGION,
        config=Config(retries={"max_attempts": 1, "mode": "standard"},
                      connect_timeout=5, read_timeout=30),
    )


@dataclass
class Outcomes:
    acked: dict[str, bytes] = field(default_factory=dict)
    attempted: dict[str, bytes] = field(default_factory=dict)
    failures: list[tuple[str, int, str, str, float]] = field(default_factory=list)
    ok_after: dict[int, float] = field(default_factory=dict)  # gateway -> first success
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def cluster(tmp_path) -> Iterator[tuple[PostgresCluster, list[GatewayProcess]]]:
    pg = PostgresCluster()
    procs: list[GatewayProcess] = []
    try:
        dsn = pg.start()
        server = GatewayProcess(tmp_path / "data", dsn)
        procs.append(server)
        server.start()
        gateway = GatewayProcess(tmp_path / "data", dsn, server.gateway_args_for())
        procs.append(gateway)
        gateway.start()
        yield pg, procs
    finally:
        for p in reversed(procs):
            p.stop()
        pg.destroy()


def _writer(n: int, endpoint: str, gateway: int, out: Outcomes, stop: threading.Event,
            restarted: threading.Event) -> None:
    s3 = client(endpoint)
    i = 0
    while not stop.is_set():
        key = f"g{gateway}/w{n}/{i:05d}"
        # Inline (1 KiB) and sharded (100 KiB) bodies: both commit paths.
        body = os.urandom(1024 if i % 2 else 100 << 10)
        i += 1
        with out.lock:
            out.attempted[key] = body
        started = time.monotonic()
        try:
            s3.put_object(Bucket="restart", Key=key, Body=body)
            got = s3.get_object(Bucket="restart", Key=key)["Body"].read()
            assert got == body, key
            with out.lock:
                out.acked[key] = body
                if restarted.is_set():
                    out.ok_after.setdefault(gateway, time.monotonic())
        except ClientError as exc:
            meta = exc.response.get("ResponseMetadata", {})
            retry_after = meta.get("HTTPHeaders", {}).get("retry-after", "")
            with out.lock:
                out.failures.append((key, meta.get("HTTPStatusCode", 0),
                                     exc.response["Error"]["Code"], retry_after,
                                     time.monotonic() - started))
            time.sleep(0.05)


def test_gateways_ride_out_a_database_restart(cluster) -> None:
    pg, gateways = cluster
    client(gateways[0].endpoint).create_bucket(Bucket="restart")
    out, stop, restarted = Outcomes(), threading.Event(), threading.Event()
    threads = [threading.Thread(target=_writer, args=(n, g.endpoint, i, out, stop, restarted))
               for i, g in enumerate(gateways) for n in range(3)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while len(out.acked) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
        before = len(out.acked)
        pg.stop()
        went_down = time.monotonic()
        time.sleep(DOWN_S)
        during = list(out.failures)
        pg.start()
        back_at = time.monotonic()
        restarted.set()
        deadline = back_at + 30
        while len(out.ok_after) < len(gateways) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert before >= 30
    # While the database was away: quick 503s that tell the client to come back.
    assert during, "no request failed while PostgreSQL was stopped"
    assert {(f[1], f[2]) for f in out.failures} <= {(503, "SlowDown"),
                                                    (503, "ServiceUnavailable")}, out.failures
    assert all(f[3] for f in out.failures), "a 503 without Retry-After"
    assert max(f[4] for f in during) < ANSWER_WITHIN_S, during
    assert went_down < back_at
    # Both gateways serve again by themselves, soon after the database is back.
    assert sorted(out.ok_after) == [0, 1], out.ok_after
    assert max(out.ok_after.values()) - back_at < 15.0
    # Every acknowledged object reads back; nothing listed is half there.
    s3 = client(gateways[1].endpoint)
    for key, body in out.acked.items():
        assert s3.get_object(Bucket="restart", Key=key)["Body"].read() == body, key
    listed = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket="restart")
              for o in page.get("Contents", [])]
    assert set(out.acked) <= set(listed)
    for key in set(listed) - set(out.acked):  # failed or unanswered writes that landed
        assert s3.get_object(Bucket="restart", Key=key)["Body"].read() == out.attempted[key]
