"""`kurastore server`: the embedded default. One data directory, a local set
of storage pods run as processes by the operator's local platform, SQLite
metadata, and the gateway in this process. Prints endpoint and keys.

Layout of the data directory:
    kurastore.json   secrets and root keys (0600), made on first start
    metadata.db      SQLite metadata (WAL)
    cluster.secret   the pods' shared secret (0600)
    objectstore.json         the desired local spec (pods, erasure, rebalance, paused)
    objectstore-status.json  the local operator's state and last ObjectStore status
    pods/pod-N/      one directory per pod (its volume)
    logs/            pod logs

The pods are run by the local operator (operator/platforms/local_control.py), the same
reconciler as on Kubernetes over the desired spec: `kurastore admin pods add|drain` and
`kurastore admin spec set` change the spec, its control loop carries the change out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from kurastore.gateway.admin.cluster import LocalPlatform, SpecRefused, publish_pods
from kurastore.gateway.admin.pods import PodAdmin
from kurastore.gateway.app import build_gateway_app, open_metadata
from kurastore.gateway.config import GatewayConfig
from kurastore.gateway.keys import LOCAL_PLATFORM, MAINTENANCE, SERVICE
from kurastore.metadata import (
    AccessKey,
    AccessKeyNotFound,
    PodRecord,
    UserNotFound,
    UserRecord,
)
from kurastore.operator.local_spec import LocalSpec, load_spec, save_spec
from kurastore.operator.platforms.local import LocalPods, pod_ids
from kurastore.operator.platforms.local_control import LocalOperator
from kurastore.operator.platforms.ports import bind_socket
from kurastore.operator.spec import SpecError
from kurastore.process import MALLOC_ENV, keep_heap_trimmed, tune_gc
from kurastore.state import load_or_create, write_secret_file

log = logging.getLogger("kurastore.server")

T = TypeVar("T")
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
    rebalance_concurrency: int | None = None
    orphan_grace_s: float | None = None  # an unreferenced shard younger than this is left
    lifecycle_day_s: float | None = None  # a shorter lifecycle "day", to try rules out
    server_log_roll_s: float | None = None  # S3 server access logs: delivery interval
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
    read_buffer_bytes: int | None = None  # stripes all GETs may hold (objects/budget.py)
    write_buffer_bytes: int | None = None  # stripes all PUTs may hold (the same)

    def load_settings(self) -> dict[str, float]:
        """The overload and slow-client settings given, as GatewayConfig keyword arguments."""
        names = ("max_in_flight_requests", "max_queued_requests", "queue_wait_s",
                 "idle_timeout_s", "client_timeout_s", "min_body_rate_bytes_s",
                 "read_buffer_bytes", "write_buffer_bytes")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def repair_settings(self) -> dict[str, float]:
        """The maintenance settings given (self-repair, lifecycle), as GatewayConfig
        keyword arguments."""
        names = ("heal_rate_bytes_s", "scrub_rate_bytes_s", "scrub_interval_s",
                 "rebalance_rate_bytes_s", "rebalance_grace_s", "rebalance_concurrency",
                 "orphan_grace_s",
                 "lifecycle_day_s", "server_log_roll_s")
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


async def _registered(config: GatewayConfig) -> dict[str, str]:
    """pod id -> state of every pod in the registry and not removed."""
    store = await open_metadata(config)
    try:
        return {p.pod_id: p.state for p in await store.list_pods() if p.state != "removed"}
    finally:
        await store.close()


def _first_spec(opts: ServerOptions, data: Path, registered: dict[str, str],
                k: int, m: int) -> LocalSpec:
    """The spec of a data directory that has none yet: --pods pods, and the pods added
    at run time by an earlier server (active in the registry, with a volume here)."""
    first = pod_ids(opts.pods)
    added = [p for p, state in registered.items()
             if state == "active" and p not in first and (data / "pods" / p).is_dir()]
    return LocalSpec(pods=tuple(first + added), data_blocks=k, parity_blocks=m)


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
    spec = load_spec(data)
    k, m = (spec.data_blocks, spec.parity_blocks) if spec else choose_erasure(opts.pods)
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

    registered = await _registered(config)
    throttle = {"rebalance_rate_bytes_s": config.rebalance_rate_bytes_s,
                "rebalance_grace_s": config.rebalance_grace_s}
    # The rebalance throttle is the one this server was started with.
    if spec is not None and opts.pods > len(spec.pods):
        log.warning("--pods %d not taken: the local spec (%s) has %d pods; "
                    "`kurastore admin spec set --pods %d` scales out", opts.pods,
                    data / "objectstore.json", len(spec.pods), opts.pods)
    spec = (spec.changed(**throttle) if spec
            else replace(_first_spec(opts, data, registered, k, m), **throttle))
    save_spec(data, spec)
    # Pods being drained run too (the store moves their data away), until removed.
    retiring = [p for p, st in registered.items() if st == "draining"
                and p not in spec.pods and (data / "pods" / p).is_dir()]
    # The gateway's port is taken before the pods pick theirs: none of them can get it,
    # and a port in use is reported before any pod starts.
    gateway_socket = bind_gateway_socket(opts.host, opts.port)
    opts = replace(opts, port=gateway_socket.getsockname()[1])  # port 0: the one given
    platform = LocalPods(data / "pods", [*spec.pods, *retiring], secret_file, secret,
                         host=opts.host, log_dir=data / "logs", env=MALLOC_ENV)
    try:
        await platform.start()
    except BaseException:
        gateway_socket.close()
        raise
    runner: web.AppRunner | None = None
    control: asyncio.Task[None] | None = None
    heap_keeper: asyncio.Task[None] | None = None
    try:
        records = [PodRecord(p.pod_id, p.url) for p in platform.pods.values()]
        epoch = await _bootstrap(config, access_key, secret_key, records, k + m)
        # auto_decompress off: S3 stores bodies sent with Content-Encoding as sent.
        app = build_gateway_app(config)
        operator: list[LocalOperator] = []  # made once the object service runs
        app[LOCAL_PLATFORM] = _local_platform(operator)
        runner = web.AppRunner(app, access_log=None, auto_decompress=False)
        await runner.setup()
        endpoint = f"http://{opts.host}:{opts.port}"
        operator.append(LocalOperator(data, platform, spec,
                                      PodAdmin(app[SERVICE], app.get(MAINTENANCE)), endpoint))
        site = web.SockSite(runner, gateway_socket, backlog=1024)
        await site.start()
        tune_gc()
        heap_keeper = asyncio.create_task(keep_heap_trimmed(), name="heap-keeper")
        control = asyncio.create_task(operator[0].run(), name="local-operator")
        _print_banner(opts, data, access_key, secret_key, k, m, epoch, created,
                      len(spec.pods))
        if ready is not None:
            ready.set()
        await _wait_for_stop()
    finally:
        if heap_keeper is not None:
            heap_keeper.cancel()
        if control is not None:
            control.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await control
        if runner is not None:
            await runner.cleanup()
        gateway_socket.close()
        await platform.stop()
        print("kurastore stopped", flush=True)


class CannotListen(Exception):
    """The gateway's address cannot be bound (in use, or not this machine's)."""


def bind_gateway_socket(host: str, port: int) -> socket.socket:
    """The gateway's socket, bound to host:port and not yet listening. Raises
    CannotListen with the reason."""
    try:
        return bind_socket(host, port)
    except OSError as exc:
        raise CannotListen(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc


async def _refusing(call: Awaitable[T]) -> T:
    """A spec the local operator cannot take is refused (409), not a crash."""
    try:
        return await call
    except SpecError as exc:
        raise SpecRefused(str(exc)) from exc


def _local_platform(operator: list[LocalOperator]) -> LocalPlatform:
    """The hooks through which `kurastore admin pods add|drain|remove` and `admin spec`
    reach the local operator."""

    async def add(count: int) -> list[PodRecord]:
        started = await _refusing(operator[0].add_pods(count))
        return [PodRecord(pod_id, url) for pod_id, url in started]

    async def drain(pod_id: str) -> bool:
        return await _refusing(operator[0].drain_pod(pod_id))

    async def remove(pod_id: str) -> None:
        await operator[0].remove_pod(pod_id)

    async def spec() -> dict[str, Any]:
        return await operator[0].spec_doc()

    async def set_spec(changes: dict[str, Any]) -> dict[str, Any]:
        return await _refusing(operator[0].set_spec(changes))

    return LocalPlatform(add_pods=add, remove_pod=remove, drain_pod=drain, spec=spec,
                         set_spec=set_spec, status=lambda: operator[0].status_doc())


async def _wait_for_stop() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


def _print_banner(
    opts: ServerOptions, data: Path, access_key: str, secret_key: str, k: int, m: int,
    epoch: int, created: bool, pods: int,
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
        f"  pods:         {pods} (erasure {k}+{m}, placement epoch {epoch})",
        f"  metrics:      {endpoint}/metrics",
        "",
        "  Try:",
        f"    export AWS_ACCESS_KEY_ID={access_key} AWS_SECRET_ACCESS_KEY={secret_key}",
        f"    aws --endpoint-url {endpoint} s3 mb s3://demo",
        "",
        "  Ctrl-C stops everything.",
    ]
    print("\n".join(lines), flush=True)
