"""Three gateways on one PostgreSQL: `kurastore server --metadata DSN` (pods and one
gateway) and two `kurastore gateway` processes sharing its pods and metadata, with
boto3 clients spread over them round-robin."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import pytest
from botocore.exceptions import ClientError
from support.cluster import free_port
from support.postgres import GatewayProcess, drop_database, make_database, postgres_server
from support.s3client import error_code, make_client

pytestmark = pytest.mark.integration
__all__ = ["postgres_server"]  # the session fixture, imported so pytest registers it


SMALL_BUDGETS = ["--write-buffer", "3M", "--read-buffer", "2M", "--max-in-flight", "64"]


@pytest.fixture(scope="module")
def gateways(postgres_server: str, tmp_path_factory) -> Iterator[list[GatewayProcess]]:
    dsn, name = make_database(postgres_server)
    data = tmp_path_factory.mktemp("pg-gateways") / "data"
    server = GatewayProcess(data, dsn)
    procs = [server]
    try:
        server.start()
        procs.append(GatewayProcess(data, dsn, server.gateway_args_for()))
        # The third gateway runs on small budgets, as `kurastore gateway` flags.
        procs.append(GatewayProcess(data, dsn, [*server.gateway_args_for(),
                                                *SMALL_BUDGETS]))
        for p in procs[1:]:
            p.start()
        yield procs
    finally:
        for p in reversed(procs):
            p.stop()
        drop_database(postgres_server, name)


def test_three_gateways_share_objects_uploads_and_conditions(gateways) -> None:
    clients = [make_client(g.endpoint, max_pool_connections=16) for g in gateways]
    clients[0].create_bucket(Bucket="shared")
    bodies = {f"obj/{i:04d}": os.urandom(1024 + (i * 7919) % (200 << 10)) for i in range(500)}

    def put(item: tuple[int, str]) -> None:
        i, key = item
        clients[i % 3].put_object(Bucket="shared", Key=key, Body=bodies[key])

    def get(item: tuple[int, str]) -> bytes:
        i, key = item
        return clients[(i + 1) % 3].get_object(Bucket="shared", Key=key)["Body"].read()

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(put, enumerate(bodies)))
        got = list(pool.map(get, enumerate(bodies)))
    assert got == list(bodies.values())  # every write read back through another gateway
    pages = clients[2].get_paginator("list_objects_v2").paginate(
        Bucket="shared", Prefix="obj/", PaginationConfig={"PageSize": 170})
    listed = [o["Key"] for page in pages for o in page["Contents"]]
    assert listed == sorted(bodies)

    # A multipart upload begun on one gateway, parts on the others, completed on another.
    up = clients[0].create_multipart_upload(Bucket="shared", Key="big")["UploadId"]
    p1, p2 = os.urandom(5 << 20), os.urandom(1 << 20)
    e1 = clients[1].upload_part(Bucket="shared", Key="big", UploadId=up, PartNumber=1, Body=p1)
    e2 = clients[2].upload_part(Bucket="shared", Key="big", UploadId=up, PartNumber=2, Body=p2)
    listed_parts = clients[0].list_parts(Bucket="shared", Key="big", UploadId=up)["Parts"]
    assert [p["PartNumber"] for p in listed_parts] == [1, 2]
    clients[2].complete_multipart_upload(
        Bucket="shared", Key="big", UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1["ETag"]},
                                   {"PartNumber": 2, "ETag": e2["ETag"]}]},
    )
    assert clients[1].get_object(Bucket="shared", Key="big")["Body"].read() == p1 + p2

    # Encrypted objects: any gateway of the cluster opens a data key another one sealed
    # (they share the metadata key), for uploads too.
    up = clients[0].create_multipart_upload(Bucket="shared", Key="sealed",
                                            ServerSideEncryption="AES256")["UploadId"]
    e1 = clients[1].upload_part(Bucket="shared", Key="sealed", UploadId=up, PartNumber=1,
                                Body=p1)
    clients[2].complete_multipart_upload(
        Bucket="shared", Key="sealed", UploadId=up,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": e1["ETag"]}]})
    clients[2].put_object(Bucket="shared", Key="kms", Body=p2, ServerSideEncryption="aws:kms",
                          SSEKMSKeyId="team-a")
    sealed = clients[1].get_object(Bucket="shared", Key="sealed", Range="bytes=17-100016")
    assert sealed["ServerSideEncryption"] == "AES256"
    assert sealed["Body"].read() == p1[17:100017]
    assert clients[0].get_object(Bucket="shared", Key="kms")["Body"].read() == p2

    # If-None-Match: * from two gateways at once: exactly one wins, every round.
    for round_ in range(8):
        barrier = threading.Barrier(2)

        def attempt(i: int, key: str = f"lock/{round_}", barrier=barrier) -> str:
            barrier.wait()
            try:
                clients[i].put_object(Bucket="shared", Key=key, Body=b"%d" % i, IfNoneMatch="*")
                return "won"
            except ClientError as exc:
                return error_code(exc)

        with ThreadPoolExecutor(2) as pool:
            outcomes = sorted(pool.map(attempt, (1, 2)))
        assert outcomes == ["PreconditionFailed", "won"], outcomes


def test_maintenance_runs_on_exactly_one_gateway(gateways) -> None:
    async def holders() -> list[str]:
        conn = await asyncpg.connect(gateways[0].dsn)
        try:
            return [r[0] for r in await conn.fetch(
                "SELECT holder FROM leases WHERE name = 'maintenance' "
                "AND expires_at > extract(epoch FROM clock_timestamp())")]
        finally:
            await conn.close()

    found = asyncio.run(holders())
    assert len(found) == 1
    pids = {g.process.pid for g in gateways if g.process is not None}
    host, pid, _ = found[0].split(":")
    assert host == socket.gethostname() and int(pid) in pids


def test_a_killed_gateway_loses_nothing_acknowledged(gateways) -> None:
    victim = gateways[2]
    s3 = make_client(gateways[1].endpoint)
    doomed = make_client(victim.endpoint)
    s3.create_bucket(Bucket="kill")
    acked: dict[str, bytes] = {}

    def writer(n: int) -> None:
        for i in range(40):
            key, body = f"w{n}/{i}", os.urandom(4096 + i * 1000)
            try:
                doomed.put_object(Bucket="kill", Key=key, Body=body)
            except Exception:  # the gateway died under this request
                return
            acked[key] = body

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 30 and time.monotonic() < deadline:
        time.sleep(0.01)
    victim.stop(sig=9)
    for t in threads:
        t.join()
    for key, body in acked.items():
        assert s3.get_object(Bucket="kill", Key=key)["Body"].read() == body
    victim.port = free_port()
    victim.start()  # and it comes back on the same metadata
    assert make_client(victim.endpoint).head_bucket(Bucket="kill")


def _metric(endpoint: str, name: str) -> float:
    with urllib.request.urlopen(f"{endpoint}/_kura/metrics", timeout=5) as answer:
        text = answer.read().decode()
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found, f"{name} not exported"
    return float(found[1])


def test_gateway_flags_set_its_budgets(gateways) -> None:
    default, small = gateways[1], gateways[2]
    assert _metric(default.endpoint, "kurastore_write_buffer_limit_bytes") == 256 << 20
    assert _metric(small.endpoint, "kurastore_write_buffer_limit_bytes") == 3 << 20
    assert _metric(small.endpoint, "kurastore_read_buffer_limit_bytes") == 2 << 20
    # Large objects pass through the small budgets whole, several at once: PUTs wait
    # for room (stripes of 1 MiB + parity against 3 MiB), GETs read a stripe at a time.
    client = make_client(small.endpoint, max_pool_connections=8)
    client.create_bucket(Bucket="small-budgets")
    bodies = {f"big-{i}": os.urandom((9 << 20) + i * 4099) for i in range(4)}
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda kv: client.put_object(Bucket="small-budgets", Key=kv[0],
                                                   Body=kv[1]), bodies.items()))
        got = list(pool.map(lambda k: client.get_object(Bucket="small-budgets",
                                                        Key=k)["Body"].read(), bodies))
    assert got == list(bodies.values())
    assert _metric(small.endpoint, "kurastore_write_buffer_waits") > 0
    assert _metric(small.endpoint, "kurastore_write_buffer_bytes") == 0
    assert _metric(small.endpoint, "kurastore_read_buffer_bytes") == 0
