"""The gateway's composition root: builds the aiohttp application from a
GatewayConfig, with one cleanup context per resource (metadata store, pod
client, object service, maintenance workers).

Routes: probes and metrics under /_kura/ (and /healthz, /readyz, /metrics for
requests that carry no S3 credentials), the admin API under /_kura/admin/v1,
and everything else to the S3 front end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from kurastore.gateway import middlewares
from kurastore.gateway.admin.handlers import add_admin_routes, render_admin_error
from kurastore.gateway.admin.pods import add_pod_routes
from kurastore.gateway.admission import admission_ctx, admission_middleware
from kurastore.gateway.config import GatewayConfig
from kurastore.gateway.keys import (
    CONFIG,
    ERROR_RENDERERS,
    MAINTENANCE,
    METRICS,
    S3_FRONTEND,
    SERVER_LOG,
    SERVICE,
)
from kurastore.gateway.maintenance.collect import run_collector
from kurastore.gateway.maintenance.expire import run_expirer
from kurastore.gateway.maintenance.lease import LeaseRunner
from kurastore.gateway.maintenance.lifecycle import run_lifecycle
from kurastore.gateway.maintenance.workers import Maintenance
from kurastore.gateway.metrics import GatewayMetrics
from kurastore.gateway.objects.config import ObjectConfig
from kurastore.gateway.objects.encryption import Keyring
from kurastore.gateway.objects.service import ObjectService
from kurastore.gateway.objects.topology import Topology
from kurastore.gateway.s3 import sse
from kurastore.gateway.s3.auth import has_s3_credentials
from kurastore.gateway.s3.frontend import (
    S3Frontend,
    render_s3_error,
    send_continue,
)
from kurastore.gateway.s3.frontend import expect_handler as s3_expect_handler
from kurastore.gateway.s3.server_log_delivery import ServerLogDelivery, note_prepared
from kurastore.gateway.swift.auth import TokenSigner
from kurastore.gateway.swift.frontend import (
    SWIFT_FRONTEND,
    SwiftFrontend,
    render_swift_error,
    wants_swift,
)
from kurastore.metadata import Store
from kurastore.metadata.postgres import PostgresStore
from kurastore.metadata.sqlite import SQLiteStore
from kurastore.storage import PodClient

log = logging.getLogger("kurastore.gateway")

PROBE_PATHS = {"/healthz", "/readyz", "/metrics"}


def object_config(config: GatewayConfig) -> ObjectConfig:
    return ObjectConfig(
        k=config.k,
        m=config.m,
        stripe_size=config.stripe_size,
        inline_threshold_bytes=config.inline_threshold_bytes,
        read_buffer_bytes=config.read_buffer_bytes,
        write_buffer_bytes=config.write_buffer_bytes,
    )


async def open_metadata(config: GatewayConfig) -> Store:
    """PostgreSQL when config.metadata_dsn is set (many gateways), else the SQLite file."""
    if config.metadata_dsn:
        return await PostgresStore.open(
            config.metadata_dsn, secret_key=config.metadata_key,
            max_size=config.metadata_pool_size,
        )
    return await SQLiteStore.open(config.metadata_path, secret_key=config.metadata_key)


async def _service_ctx(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    store = await open_metadata(config)
    pods = PodClient(config.cluster_secret)
    try:
        topology = await Topology.load(store)
        # The metadata key also seals server-side encryption's data keys (separate KEKs
        # derived from it): every gateway of a cluster has it, so any can decrypt.
        service = ObjectService(store, pods, topology, object_config(config),
                                keyring=Keyring(config.metadata_key),
                                bucket_encryption=sse.bucket_default)
        app[SERVICE] = service
        app[SERVER_LOG] = server_log = ServerLogDelivery(
            service, roll_s=config.server_log_roll_s,
            max_object_bytes=config.server_log_object_bytes,
            max_buffer_bytes=config.server_log_buffer_bytes,
        )
        app[S3_FRONTEND] = S3Frontend(service, region=config.region, domain=config.domain,
                                      server_log=server_log)
        app[SWIFT_FRONTEND] = SwiftFrontend(
            service, TokenSigner(config.cluster_secret, config.swift_token_lifetime_s)
        )
        yield
    finally:
        if SERVICE in app:
            await app[SERVICE].close()
        await pods.close()
        await store.close()


async def _server_log_ctx(app: web.Application) -> AsyncIterator[None]:
    """S3 server access log delivery: runs while the service does; a clean shutdown
    delivers what it holds before the service closes."""
    app[SERVER_LOG].start()
    yield
    await app[SERVER_LOG].close()


@contextlib.asynccontextmanager
async def _maintenance_workers(app: web.Application) -> AsyncIterator[None]:
    """The maintenance workers; run by _workers_ctx while this gateway holds the lease."""
    config = app[CONFIG]
    service = app[SERVICE]
    stop = asyncio.Event()
    started = time.time()
    collector = asyncio.create_task(
        run_collector(
            service.store, service.pods, service.topology,
            interval_s=config.collect_interval_s, stop_event=stop,
            pending_grace_s=config.pending_grace_s,
            # One gateway per embedded cluster: whatever was pending when it
            # started belongs to a dead run and is collected at once. With shared
            # metadata other gateways' writes are pending too: only the grace applies.
            abandon_before=started if config.metadata_dsn is None else None,
        ),
        name="collector",
    )
    expirer = asyncio.create_task(
        run_expirer(service, interval_s=config.expiry_interval_s, stop_event=stop),
        name="expirer",
    )
    lifecycle = asyncio.create_task(
        run_lifecycle(service, stop_event=stop, day_s=config.lifecycle_day_s), name="lifecycle"
    )
    repair = asyncio.create_task(app[MAINTENANCE].run(stop), name="healer-and-scrubber")
    yield
    stop.set()
    lifecycle.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await lifecycle
    repair.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await repair
    collector.cancel()
    expirer.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await expirer
    with contextlib.suppress(asyncio.CancelledError):
        await collector


async def _workers_ctx(app: web.Application) -> AsyncIterator[None]:
    """Maintenance runs once per cluster: only while this gateway holds the lease
    (gateway/maintenance/lease.py; renewed every ttl/3, taken over within ttl * 4/3)."""
    # Made at startup (app state is frozen once it runs); it works only under the lease.
    app[MAINTENANCE] = Maintenance.for_service(app[SERVICE], app[CONFIG])
    config = app[CONFIG]
    # SQLite metadata serves one gateway process at a time, so its lease needs no
    # random part: a restarted gateway takes its own lease back at once instead of
    # waiting out the dead process's ttl.
    holder = None if config.metadata_dsn else f"sqlite:{config.metadata_path}"
    runner = LeaseRunner(
        app[SERVICE].store, lambda: _maintenance_workers(app), holder=holder,
        ttl_s=config.lease_ttl_s,
    )
    await runner.start()
    yield
    await runner.stop()
    app[MAINTENANCE].close()


async def _s3(request: web.Request) -> web.StreamResponse:
    if wants_swift(request):  # /auth/v1.0, /info, /healthcheck, /v1/AUTH_* (swift/routes.py)
        await send_continue(request)
        return await request.app[SWIFT_FRONTEND].handle(request)
    if request.path in PROBE_PATHS and not has_s3_credentials(request.headers, request.query):
        return await _probe(request, request.path.lstrip("/"))
    return await request.app[S3_FRONTEND].handle(request)


async def _probe(request: web.Request, name: str) -> web.Response:
    request[middlewares.PROTOCOL] = "probe"
    request[middlewares.OP] = name
    if name == "healthz":
        return web.json_response({"status": "ok"})
    service = request.app[SERVICE]
    if name == "readyz":
        ready, detail = await service.readiness()
        return web.json_response(detail, status=200 if ready else 503)
    metrics = request.app[METRICS]
    await _refresh_gauges(request.app)
    return web.Response(
        body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
    )


async def _refresh_gauges(app: web.Application) -> None:
    metrics = app[METRICS]
    service = app[SERVICE]
    stats = service.stats
    metrics.degraded_reads.set(stats.degraded_reads)
    metrics.quorum_failures.set(stats.quorum_failures)
    metrics.read_buffer_held.set(service.read_budget.held)
    metrics.read_buffer_limit.set(service.read_budget.limit)
    writes = service.write_budget
    metrics.write_buffer_held.set(writes.held)
    metrics.write_buffer_limit.set(writes.limit)
    metrics.write_buffer_waits.set(writes.waits)
    metrics.write_buffer_timeouts.set(writes.timeouts)
    metrics.placement_epoch.set(service.topology.current.epoch)
    metrics.pods_total.set(len(service.topology.current.pods))
    with contextlib.suppress(Exception):
        metrics.heal_queue.set(await service.store.heal_queue_length())
    app[MAINTENANCE].export(metrics)


async def _probe_route(request: web.Request) -> web.StreamResponse:
    return await _probe(request, request.match_info["name"])


def build_gateway_app(config: GatewayConfig) -> web.Application:
    app = web.Application(
        middlewares=[
            middlewares.access_log_middleware, admission_middleware, middlewares.error_middleware,
        ],
        client_max_size=1 << 20,
        # keepalive_timeout also closes connections whose headers never complete.
        handler_args={"max_field_size": 16384, "max_line_size": 16384,
                      "keepalive_timeout": config.idle_timeout_s,
                      "read_bufsize": 1 << 20},
    )
    app[CONFIG] = config
    app[METRICS] = GatewayMetrics()
    app[ERROR_RENDERERS] = {
        "s3": render_s3_error, "admin": render_admin_error, "swift": render_swift_error,
    }
    app.on_response_prepare.append(middlewares.stamp_response)
    app.on_response_prepare.append(note_prepared)
    app.cleanup_ctx.append(admission_ctx)
    app.cleanup_ctx.append(_service_ctx)
    app.cleanup_ctx.append(_server_log_ctx)
    app.cleanup_ctx.append(_workers_ctx)
    app.router.add_get("/_kura/{name:healthz|readyz|metrics}", _probe_route)
    add_admin_routes(app)
    add_pod_routes(app)
    # [\s\S], not ".": object keys may contain newlines (%0A in the path).
    # "100 Continue" waits until S3 has authorized the request (s3/frontend.py).
    app.router.add_route("*", r"/{tail:[\s\S]*}", _s3, expect_handler=s3_expect_handler)
    return app
