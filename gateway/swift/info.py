"""`GET /info` (the capabilities python-swiftclient asks for before choosing how
to upload large objects) and `GET /healthcheck`. Neither needs a token.

Rule: /info only announces what this front end really serves; every limit it
states is the one the handlers enforce (headers.py, listing.py,
large_objects.py).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from kurastore.gateway.swift import bulk, symlinks, tempurl
from kurastore.gateway.swift import headers as hdr
from kurastore.gateway.swift import versioned_writes as vw
from kurastore.gateway.swift.large_objects import (
    DLO_MAX_SEGMENTS,
    MAX_MANIFEST_SEGMENTS,
    MAX_MANIFEST_SIZE,
    YIELD_FREQUENCY_S,
)
from kurastore.gateway.swift.listing import LISTING_LIMIT

SWIFT_API_VERSION = "2.34.0"  # the Swift release whose object API this follows


def capabilities(max_file_size: int = hdr.MAX_FILE_SIZE) -> dict[str, Any]:
    return {
        "swift": {
            "version": SWIFT_API_VERSION,
            "max_file_size": max_file_size,
            "max_meta_name_length": hdr.MAX_META_NAME_LENGTH,
            "max_meta_value_length": hdr.MAX_META_VALUE_LENGTH,
            "max_meta_count": hdr.MAX_META_COUNT,
            "max_meta_overall_size": hdr.MAX_META_OVERALL_SIZE,
            "max_header_size": 16384,
            "max_object_name_length": hdr.MAX_OBJECT_NAME_LENGTH,
            "max_container_name_length": hdr.MAX_CONTAINER_NAME_LENGTH,
            "max_account_name_length": 256,
            "container_listing_limit": LISTING_LIMIT,
            "account_listing_limit": LISTING_LIMIT,
            "extra_header_count": 0,
            "account_autocreate": True,
            "allow_account_management": False,
            "strict_cors_mode": True,
            "valid_api_versions": ["v1", "v1.0"],
            "policies": [{"name": "Policy-0", "aliases": "Policy-0", "default": True}],
        },
        "slo": {
            "max_manifest_segments": MAX_MANIFEST_SEGMENTS,
            "max_manifest_size": MAX_MANIFEST_SIZE,
            "min_segment_size": 1,
            "yield_frequency": YIELD_FREQUENCY_S,
        },
        "dlo": {"max_segments": DLO_MAX_SEGMENTS},
        "tempauth": {"account_acls": False},
        "tempurl": tempurl.capabilities(),
        "bulk_delete": bulk.capabilities(),
        "versioned_writes": vw.capabilities(),
        "staticweb": {},
        "symlink": symlinks.capabilities(),
    }


async def handle_info(request: web.Request, max_file_size: int) -> web.StreamResponse:
    resp = web.json_response(capabilities(max_file_size))
    if request.method == "HEAD":
        return web.Response(headers={"Content-Type": "application/json; charset=utf-8"})
    return resp


async def handle_healthcheck(request: web.Request) -> web.StreamResponse:
    return web.Response(text="" if request.method == "HEAD" else "OK", content_type="text/plain")
