"""`kurastore gateway`: one gateway process (S3, Swift, admin API, and the maintenance
workers while it holds the lease) on shared PostgreSQL metadata, with no pods of
its own: the pods' URLs come from the pod registry in the metadata. Run N of them
behind one Service. With `--sqlite PATH` (or `--metadata sqlite:///PATH`) it runs alone on an
embedded SQLite file (the operator's single-gateway stores).

Root credentials: when KURASTORE_ACCESS_KEY and KURASTORE_SECRET_KEY are set, the
gateway makes sure the admin user `root` has that key before serving (the operator
hands them in from its admin Secret), so the admin API works on a fresh store.

Secrets come from files or the environment, never from the command line, so that a
Kubernetes Secret can supply them as a mounted file or a variable:
- metadata DSN: --metadata DSN, --metadata-file PATH, or KURASTORE_METADATA_DSN;
- cluster secret (proves the gateway to the pods): --cluster-secret-file PATH or
  KURASTORE_CLUSTER_SECRET;
- metadata key (32 bytes sealing access-key secrets; 64 hex chars in a file or
  variable): --metadata-key-file PATH or KURASTORE_METADATA_KEY.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from kurastore.gateway.app import build_gateway_app, open_metadata
from kurastore.gateway.config import GatewayConfig
from kurastore.process import keep_heap_trimmed, tune_gc

log = logging.getLogger("kurastore.gateway")

# k + m of the placement map -> (k, m), as `kurastore server` chooses them.
ERASURE_BY_WIDTH = {3: (2, 1), 4: (2, 2), 5: (3, 2), 6: (4, 2), 11: (8, 3)}


class ConfigError(ValueError):
    """A setting is missing or malformed; the message says which and where from."""


def resolve_dsn(
    flag: str | None, file: str | None, environ: dict[str, str] | os._Environ[str]
) -> str | None:
    """The metadata DSN from --metadata, else --metadata-file, else the environment."""
    if flag:
        dsn = flag
    elif file:
        dsn = Path(file).read_text().strip()
    else:
        dsn = environ.get("KURASTORE_METADATA_DSN", "").strip()
    if not dsn:
        return None
    if not dsn.startswith(("postgresql://", "postgres://", "sqlite://")):
        raise ConfigError("the metadata DSN must start with postgresql:// (PostgreSQL) "
                          "or sqlite:// (one gateway)")
    return dsn


def read_secret(
    file: str | None, env_name: str, environ: dict[str, str] | os._Environ[str]
) -> bytes:
    raw = Path(file).read_bytes() if file else environ.get(env_name, "").encode()
    raw = raw.strip()
    if not raw:
        raise ConfigError(f"no secret: give its file or set {env_name}")
    return raw


def read_metadata_key(file: str | None, environ: dict[str, str] | os._Environ[str]) -> bytes:
    raw = read_secret(file, "KURASTORE_METADATA_KEY", environ)
    if len(raw) == 32:
        return raw
    try:
        key = bytes.fromhex(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != 32:
        raise ConfigError("the metadata key must be 32 bytes (64 hex characters)")
    return key


@dataclass(frozen=True)
class GatewayOptions:
    metadata_dsn: str
    cluster_secret: bytes
    metadata_key: bytes
    host: str = "127.0.0.1"
    port: int = 9000
    region: str = "us-east-1"
    domain: str | None = None
    erasure: tuple[int, int] | None = None  # None: from the placement map's width
    lease_ttl_s: float = 15.0
    root_keys: tuple[str, str] | None = None  # (access, secret) of the admin user root
    rebalance_rate_bytes_s: float | None = None
    rebalance_grace_s: float | None = None
    rebalance_concurrency: int | None = None
    # Overload and slow-client settings, by GatewayConfig field (gateway/admission.py,
    # objects/budget.py); absent: its defaults.
    load: Mapping[str, float] = field(default_factory=dict)


def sqlite_path(dsn: str) -> str | None:
    """The file of a sqlite:///path DSN (None for PostgreSQL)."""
    return dsn.removeprefix("sqlite://") if dsn.startswith("sqlite://") else None


async def ensure_root(config: GatewayConfig, access_key: str, secret_key: str) -> None:
    """The admin user root with this key, created if missing (several gateways may race:
    the loser finds what the winner made)."""
    import time

    from kurastore.metadata import (
        AccessKey,
        AccessKeyNotFound,
        UserExists,
        UserNotFound,
        UserRecord,
    )

    root_id = "0" * 63 + "1"  # the same id `kurastore server` gives root
    store = await open_metadata(config)
    try:
        try:
            await store.get_user(root_id)
        except UserNotFound:
            with contextlib.suppress(UserExists):
                await store.create_user(UserRecord(root_id, "root", time.time(), is_admin=True))
        try:
            found = await store.get_access_key(access_key)
            if found.secret_key == secret_key:
                return
            await store.delete_access_key(access_key)
        except AccessKeyNotFound:
            pass
        await store.create_access_key(AccessKey(access_key, secret_key, root_id, time.time()))
    finally:
        await store.close()


async def _erasure_of_cluster(config: GatewayConfig) -> tuple[int, int]:
    store = await open_metadata(config)
    try:
        latest = await store.latest_placement_map()
    finally:
        await store.close()
    if latest is None:
        return config.k, config.m
    from kurastore.placement import PlacementMap

    width = PlacementMap.from_json(latest[1]).width
    if width not in ERASURE_BY_WIDTH:
        raise ConfigError(f"placement width {width}: pass --erasure K+M")
    return ERASURE_BY_WIDTH[width]


def gateway_config(opts: GatewayOptions) -> GatewayConfig:
    """The gateway's configuration before its erasure code is known."""
    path = sqlite_path(opts.metadata_dsn)
    repair = {name: value for name, value in (
        ("rebalance_rate_bytes_s", opts.rebalance_rate_bytes_s),
        ("rebalance_grace_s", opts.rebalance_grace_s),
        ("rebalance_concurrency", opts.rebalance_concurrency)) if value is not None}
    return GatewayConfig(
        listen_host=opts.host, listen_port=opts.port,
        metadata_dsn=None if path else opts.metadata_dsn,
        metadata_path=path or "metadata.db",
        cluster_secret=opts.cluster_secret, metadata_key=opts.metadata_key,
        region=opts.region, domain=opts.domain, lease_ttl_s=opts.lease_ttl_s, **repair,
        **opts.load,  # type: ignore[arg-type]
    )


async def run_gateway(opts: GatewayOptions, *, ready: asyncio.Event | None = None) -> None:
    path = sqlite_path(opts.metadata_dsn)
    config = gateway_config(opts)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    if opts.root_keys:
        await ensure_root(config, *opts.root_keys)
    k, m = opts.erasure or await _erasure_of_cluster(config)
    config = dataclasses.replace(config, k=k, m=m)
    runner = web.AppRunner(build_gateway_app(config), access_log=None, auto_decompress=False)
    await runner.setup()
    heap_keeper: asyncio.Task[None] | None = None
    try:
        site = web.TCPSite(runner, opts.host, opts.port, backlog=1024)
        await site.start()
        tune_gc()
        heap_keeper = asyncio.create_task(keep_heap_trimmed(), name="heap-keeper")
        print(f"kurastore gateway on http://{opts.host}:{opts.port} "
              f"(erasure {k}+{m}, metadata on {'SQLite' if path else 'PostgreSQL'})",
              flush=True)
        if ready is not None:
            ready.set()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        if heap_keeper is not None:
            heap_keeper.cancel()
        await runner.cleanup()
