"""Typed application keys: the gateway's shared state, one key per resource."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from kurastore.gateway.config import GatewayConfig
from kurastore.gateway.metrics import GatewayMetrics

ErrorRenderer = Callable[[web.Request, BaseException, str], web.Response]

CONFIG = web.AppKey("config", GatewayConfig)
METRICS = web.AppKey("metrics", GatewayMetrics)
# protocol name ("s3", "admin", ...) -> renderer of its wire errors
ERROR_RENDERERS = web.AppKey("error_renderers", dict[str, ErrorRenderer])

# Set by the service cleanup context (gateway/app.py). Typed loosely here so this
# module stays importable without the object service.
SERVICE: web.AppKey = web.AppKey("service")
S3_FRONTEND: web.AppKey = web.AppKey("s3_frontend")
# The S3 server access log delivery (gateway/s3/server_log_delivery.py), set with the
# service; started and flushed by its own cleanup context.
SERVER_LOG: web.AppKey = web.AppKey("server_log")
# The healer and scrubber (gateway/maintenance/workers.py Maintenance), set by the
# workers cleanup context.
MAINTENANCE: web.AppKey = web.AppKey("maintenance")
# The local platform's hooks (gateway/admin/cluster.py LocalPlatform), set by
# `kurastore server` only: `POST /pods {"count": N}` starts pod processes through them.
LOCAL_PLATFORM: web.AppKey = web.AppKey("local_platform")
