"""Bucket features kurastore does not offer, answered as S3 answers for a bucket that
never configured them: transfer acceleration, event notifications, replication, static
website hosting, and the analytics, metrics, inventory and Intelligent-Tiering
configurations.

Why answer at all: tools read every bucket setting they know of. Terraform's
aws_s3_bucket reads acceleration, website and replication on each refresh; s3cmd
`info`, the console-like browsers and backup tools read notifications. An answer of
NotImplemented breaks them where AWS's "nothing configured" answer is both true here and
what they handle. Setting any of these is still NotImplemented, except the settings
that change nothing: an empty notification configuration (clearing it) and deleting a
website or replication configuration, which S3 accepts when there is none.
"""

from __future__ import annotations

from aiohttp import web

from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3.context import Handler, S3Request, empty_response, xml_response
from kurastore.gateway.s3.routes import S3Op
from kurastore.gateway.s3.xml import document, el, parse

# The listing operations' result elements and the sub-resource that names each.
_LISTS = {
    S3Op.LIST_BUCKET_ANALYTICS_CONFIGS: "ListBucketAnalyticsConfigurationResult",
    S3Op.LIST_BUCKET_METRICS_CONFIGS: "ListMetricsConfigurationsResult",
    S3Op.LIST_BUCKET_INVENTORY_CONFIGS: "ListInventoryConfigurationsResult",
    S3Op.LIST_BUCKET_INTELLIGENT_TIERING_CONFIGS: (
        "ListBucketIntelligentTieringConfigurationsOutput"
    ),
}


async def get_bucket_accelerate(s3: S3Request) -> web.StreamResponse:
    # A bucket whose acceleration was never set has no Status element.
    return xml_response(document("AccelerateConfiguration", []))


async def get_bucket_notification(s3: S3Request) -> web.StreamResponse:
    return xml_response(document("NotificationConfiguration", []))


async def put_bucket_notification(s3: S3Request) -> web.StreamResponse:
    doc = parse(await s3.read_xml_body(), "NotificationConfiguration")
    if len(doc):
        raise s3e.NotImplemented_("Bucket event notifications are not supported.")
    return empty_response()


async def get_bucket_replication(s3: S3Request) -> web.StreamResponse:
    raise s3e.ReplicationConfigurationNotFoundError(BucketName=s3.bucket)


async def get_bucket_website(s3: S3Request) -> web.StreamResponse:
    raise s3e.NoSuchWebsiteConfiguration(BucketName=s3.bucket)


async def delete_nothing(s3: S3Request) -> web.StreamResponse:
    return empty_response(204)


async def list_or_get_configuration(s3: S3Request) -> web.StreamResponse:
    """With `id`, one configuration (there is none); without, the empty list."""
    if "id" in s3.query:
        raise s3e.NoSuchConfiguration()
    return xml_response(document(_LISTS[s3.op], [el("IsTruncated", False)]))


async def delete_configuration(s3: S3Request) -> web.StreamResponse:
    raise s3e.NoSuchConfiguration()


HANDLERS: dict[S3Op, Handler] = {
    S3Op.GET_BUCKET_ACCELERATE: get_bucket_accelerate,
    S3Op.GET_BUCKET_NOTIFICATION: get_bucket_notification,
    S3Op.PUT_BUCKET_NOTIFICATION: put_bucket_notification,
    S3Op.GET_BUCKET_REPLICATION: get_bucket_replication,
    S3Op.DELETE_BUCKET_REPLICATION: delete_nothing,
    S3Op.GET_BUCKET_WEBSITE: get_bucket_website,
    S3Op.DELETE_BUCKET_WEBSITE: delete_nothing,
    **{op: list_or_get_configuration for op in _LISTS},
    S3Op.DELETE_BUCKET_ANALYTICS_CONFIG: delete_configuration,
    S3Op.DELETE_BUCKET_METRICS_CONFIG: delete_configuration,
    S3Op.DELETE_BUCKET_INVENTORY_CONFIG: delete_configuration,
    S3Op.DELETE_BUCKET_INTELLIGENT_TIERING_CONFIG: delete_configuration,
}
