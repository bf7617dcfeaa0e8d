"""`kurastore server`: the embedded default. One data directory, a local set
of storage pods run as processes by the operator's local platform, SQLite
metadata, and the gateway in this process. Prints endpoint and keys.

Layout of the data directory:
    kurastore.json   secrets and root keys (0600), made on first start
    metadata.db      SQLite metadata (WAL)
    cluster.secret   the pods' shared secret (0600)
    pods/pod-N/      one directory per pod (its volume)
    logs/            pod logs
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass, replace
from pathlib import Path

from aiohttp import web

from kurastore.gateway.admin.cluster import LocalPlatform, publish_pods
from kurastore.gateway.app import build_gateway_app, open_metadata
from kurastore.gateway.config import GatewayConfig
from kurastore.gateway.keys import LOCAL_PLATFORM
from kurastore.metadata import (
    AccessKey,
    AccessKeyNotFound,
    PodRecord,
    UserNotFound,
    UserRecord,
)
from kurastore.operator.platforms.local import LocalPods, next_pod_ids, pod_ids
from kurastore.process import MALLOC_ENV
from kurastore.state import load_or_create, write_secret_file

log = logging.getLogger("kurastore.server")

ROOT_USER = "root"
ROOT_USER_ID = "0" * 63 + "1"


def choose_erasure(pods: int) -> tuple[int, int]:
    """k+m for a pod count: 2+1 (3 pods), 2+2 (4), 3+2 (5), 4+2 (6-10), 8+3 (11+)."""
    if pods >= 11:
        return 8, 3
    if pods >= 6:
        return 4, 2
    table = {3: (2, 1), 4: (2, 2), 5: (3, 2)}
    if pods not in table:
        raise ValueError("kurastore server needs at least 3 pods")
    return table[pods]


@dataclass(frozen=True)
class ServerOptions:
    data_dir: Path
    pods: int = 6
    host: str = "127.0.0.1"
    port: int = 9000
    region: str = "us-east-1"
    domain: str | None = None
    # Self-repair settings (None: GatewayConfig's defaults: heal promptly, scrub slowly).
    heal_rate_bytes_s: float | None = None
    scrub_rate_bytes_s: float | None = None
    scrub_interval_s: float | None = None
    rebalance_rate_bytes_s: float | None = None
    rebalance_grace_s: float | None = None
    orphan_grace_s: float | None = None  # an unreferenced shard younger than this is left
    lifecycle_day_s: float | None = None  # a shorter lifecycle "day", to try rules out
    # PostgreSQL metadata (postgresql://...) instead of <data>/metadata.db: then more
    # gateways (`kurastore gateway`) can share the pods and the metadata.
    metadata_dsn: str | None = None
    # Overload and slow clients (gateway/admission.py; None: GatewayConfig's defaults).
    max_in_flight_requests: int | None = None
    max_queued_requests: int | None = None
    queue_wait_s: float | None = None
    idle_timeout_s: float | None = None
    client_timeout_s: float | None = None
    min_body_rate_bytes_s: float | None = None

    def load_settings(self) -> dict[str, float]:
        """The overload and slow-client settings given, as GatewayConfig keyword arguments."""
        names = ("max_in_flight_requests", "max_queued_requests", "queue_wait_s",
                 "idle_timeout_s", "client_timeout_s", "min_body_rate_bytes_s")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def repair_settings(self) -> dict[str, float]:
        """The maintenance settings given (self-repair, lifecycle), as GatewayConfig
        keyword arguments."""
        names = ("heal_rate_bytes_s", "scrub_rate_bytes_s", "scrub_interval_s",
                 "rebalance_rate_bytes_s", "rebalance_grace_s", "orphan_grace_s",
                 "lifecycle_day_s")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}


async def _bootstrap(
    config: GatewayConfig, access_key: str, secret_key: str, pods: list[PodRecord], width: int
) -> int:
    """Root user and key, pod registry and placement map. Returns the epoch."""
    store = await open_metadata(config)
    try:
        try:
            await store.get_user(ROOT_USER_ID)
        except UserNotFound:
            await store.create_user(
                UserRecord(ROOT_USER_ID, ROOT_USER, time.time(), is_admin=True)
            )
        try:
            existing = await store.get_access_key(access_key)
            if existing.secret_key != secret_key:
                await store.delete_access_key(access_key)
                raise AccessKeyNotFound(access_key)
        except AccessKeyNotFound:
            await store.create_access_key(
                AccessKey(access_key, secret_key, ROOT_USER_ID, time.time())
            )
        # A pod keeps what the admin API set (state, weight, zone): only its URL is new.
        known = {p.pod_id: p for p in await store.list_pods()}
        pods = [replace(known[p.pod_id], url=p.url) if p.pod_id in known else p for p in pods]
        pmap = await publish_pods(store, pods, width)
        return pmap.epoch
    finally:
        await store.close()


async def _added_pods(config: GatewayConfig, first: int) -> list[str]:
    """Pods added at run time (`kurastore admin pods add`) and not removed: a restarted
    server starts them again beside the first `first`."""
    store = await open_metadata(config)
    try:
        registered = [p.pod_id for p in await store.list_pods() if p.state != "removed"]
    finally:
        await store.close()
    return [pod_id for pod_id in registered if pod_id not in pod_ids(first)]


async def run_server(opts: ServerOptions, *, ready: asyncio.Event | None = None) -> None:
    data = opts.data_dir.resolve()
    (data / "pods").mkdir(parents=True, exist_ok=True)
    (data / "logs").mkdir(parents=True, exist_ok=True)
    state, created = load_or_create(data)
    access_key = os.environ.get("KURASTORE_ACCESS_KEY") or state.access_key
    secret_key = os.environ.get("KURASTORE_SECRET_KEY") or state.secret_key
    secret = state.cluster_secret.encode()
    secret_file = data / "cluster.secret"
    write_secret_file(secret_file, secret)
    k, m = choose_erasure(opts.pods)
    config = GatewayConfig(
        listen_host=opts.host,
        listen_port=opts.port,
        metadata_path=str(data / "metadata.db"),
        metadata_dsn=opts.metadata_dsn,
        cluster_secret=secret,
        metadata_key=bytes.fromhex(state.metadata_key),
        region=opts.region,
        domain=opts.domain,
        k=k,
        m=m,
        **opts.repair_settings(),
        **opts.load_settings(),
    )

    ids = pod_ids(opts.pods) + await _added_pods(config, opts.pods)
    platform = LocalPods(data / "pods", ids, secret_file, secret,
                         host=opts.host, log_dir=data / "logs", env=MALLOC_ENV)
    await platform.start()
    runner: web.AppRunner | None = None
    try:
        records = [PodRecord(p.pod_id, p.url) for p in platform.pods.values()]
        epoch = await _bootstrap(config, access_key, secret_key, records, k + m)
        # auto_decompress off: S3 stores bodies sent with Content-Encoding as sent.
        app = build_gateway_app(config)
        app[LOCAL_PLATFORM] = _local_platform(platform)
        runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await runner.setup()
        site = web.TCPSite(runner, opts.host, opts.port, backlog=1024)
        await site.start()
        _print_banner(opts, data, access_key, secret_key, k, m, epoch, created)
        if ready is not None:
            ready.set()
        await _wait_for_stop()
    finally:
        if runner is not None:
            await runner.cleanup()
        await platform.stop()
        print("kurastore stopped", flush=True)


def _local_platform(platform: LocalPods) -> LocalPlatform:
    """The hooks through which `kurastore admin pods add|remove` reach the pod processes:
    new pods are started and ready before the gateway publishes them."""

    async def add(count: int) -> list[PodRecord]:
        started = await platform.add_pods(next_pod_ids(list(platform.pods), count))
        return [PodRecord(p.pod_id, p.url) for p in started]

    return LocalPlatform(add_pods=add, remove_pod=platform.remove_pod)


async def _wait_for_stop() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _print_banner(
    opts: ServerOptions, data: Path, access_key: str, secret_key: str, k: int, m: int,
    epoch: int, created: bool,
) -> None:
    endpoint = f"http://{opts.host}:{opts.port}"
    lines = [
        "kurastore is running" + (" (new data directory)" if created else ""),
        f"  S3 endpoint:  {endpoint}",
        f"  Swift auth:   {endpoint}/auth/v1.0  (user: access key, key: secret key)",
        f"  region:       {opts.region}",
        f"  access key:   {access_key}",
        f"  secret key:   {secret_key}",
        f"  data:         {data}",
        f"  pods:         {opts.pods} (erasure {k}+{m}, placement epoch {epoch})",
        f"  metrics:      {endpoint}/metrics",
        "",
        "  Try:",
        f"    export AWS_ACCESS_KEY_ID={access_key} AWS_SECRET_ACCESS_KEY={secret_key}",
        f"    aws --endpoint-url {endpoint} s3 mb s3://demo",
        "",
        "  Ctrl-C stops everything.",
    ]
    print("\n".join(lines), flush=True)
