"""Server access logging configuration: PutBucketLogging's BucketLoggingStatus in,
GetBucketLogging's out, the checks of a target bucket, and the one stored shape the
delivery (server_log.py) reads back.

Stored in the source bucket's settings under "logging" as exactly
{"target_bucket": str, "target_prefix": str, "grants": acl.encode form,
"key_format": "simple" | "partitioned", "date_source": "EventTime" | "DeliveryTime" | ""};
no "logging" key means logging is off.

Rules (Amazon S3 API reference and user guide; AWS's answers where they are silent):
- An empty BucketLoggingStatus turns logging off. LoggingEnabled needs TargetBucket
  and TargetPrefix (it may be empty); an unknown PartitionDateSource, a TargetGrant
  whose Permission is not FULL_CONTROL, READ or WRITE, or both key formats at once
  is MalformedXML.
- Only the source bucket's owner sets it (AWS: "you must be the bucket owner"); a
  bucket policy may still deny the owner (access.py), and may grant
  s3:GetBucketLogging to others.
- The target bucket must exist, belong to the source bucket's owner
  (InvalidTargetBucketForLogging), be in the same region
  (CrossLocationLoggingProhibited), have no Object Lock default retention, and let
  the log delivery write: a bucket policy allowing the service principal
  logging.s3.amazonaws.com s3:PutObject on arn:aws:s3:::<target>/<prefix> under the
  source's aws:SourceArn and aws:SourceAccount, or (ACLs enabled) a bucket ACL
  granting the LogDelivery group WRITE. Else InvalidTargetBucketForLogging. The
  same check runs again before every delivery, so taking the grant away stops it.
- TargetGrants are kept, answered by GetBucketLogging and become the ACL of every
  delivered log object, next to the owner's FULL_CONTROL. A target bucket with
  BucketOwnerEnforced (ACLs off) refuses them: AccessControlListNotSupported.
- GetBucketLogging of a configuration without TargetObjectKeyFormat answers the
  default, SimplePrefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kurastore.gateway.s3 import access, acl, lock, policy
from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3.xml import child_text, document, el, parse
from kurastore.metadata import BucketRecord

SETTINGS_KEY = "logging"
SERVICE = "logging.s3.amazonaws.com"
SIMPLE, PARTITIONED = "simple", "partitioned"
DATE_SOURCES = ("EventTime", "DeliveryTime")
TARGET_PERMISSIONS = (acl.FULL_CONTROL, acl.READ, acl.WRITE)

InvalidTargetBucketForLogging = type(
    "InvalidTargetBucketForLogging", (s3e.S3Error,),
    {"code": "InvalidTargetBucketForLogging", "status": 400,
     "message": "The target bucket for logging does not exist, is not owned by you, or "
                "does not have the appropriate grants for the log-delivery group."},
)  # fmt: skip
CrossLocationLoggingProhibited = type(
    "CrossLocationLoggingProhibited", (s3e.S3Error,),
    {"code": "CrossLocationLoggingProhibited", "status": 403,
     "message": "Cross S3 location logging not allowed."},
)  # fmt: skip
NO_DELIVERY_GRANT = (
    "You must give the log-delivery group WRITE permission to the target bucket, or allow "
    f"{SERVICE} s3:PutObject on the target prefix in the target bucket's policy"
)


def config_of(settings: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The stored configuration, None when logging is off."""
    config = settings.get(SETTINGS_KEY)
    return config if isinstance(config, dict) and config.get("target_bucket") else None


# --- the document -------------------------------------------------------------------------


async def parse_config(body: bytes, resolve: acl.Resolver) -> dict[str, Any] | None:
    """The stored shape of a PutBucketLogging body; None turns logging off."""
    doc = parse(body, "BucketLoggingStatus")
    enabled = doc.find("LoggingEnabled")
    if enabled is None:
        if len(doc):
            raise s3e.MalformedXML()
        return None
    target = child_text(enabled, "TargetBucket")
    prefix = child_text(enabled, "TargetPrefix")
    if not target or prefix is None:
        raise s3e.MalformedXML()
    grants: list[acl.Grant] = []
    listing = enabled.find("TargetGrants")
    for node in [] if listing is None else listing.findall("Grant"):
        grant = await acl.grant_of(node, resolve, TARGET_PERMISSIONS)
        if grant is None:
            raise s3e.MalformedXML()
        grants.append(grant)
    key_format, date_source = _key_format(enabled)
    return {
        "target_bucket": target.strip(), "target_prefix": prefix,
        "grants": acl.encode(tuple(grants)), "key_format": key_format,
        "date_source": date_source,
    }  # fmt: skip


def _key_format(enabled: Any) -> tuple[str, str]:
    node = enabled.find("TargetObjectKeyFormat")
    if node is None:
        return SIMPLE, ""
    simple, partitioned = node.find("SimplePrefix"), node.find("PartitionedPrefix")
    if simple is not None and partitioned is not None:
        raise s3e.MalformedXML()
    if partitioned is None:
        return SIMPLE, ""
    source = (child_text(partitioned, "PartitionDateSource") or "").strip()
    if source not in DATE_SOURCES:
        raise s3e.MalformedXML()
    return PARTITIONED, source


def render_config(config: Mapping[str, Any] | None, names: Mapping[str, str]) -> bytes:
    """GetBucketLogging's answer; `names` gives grantees' display names by user id."""
    if config is None:
        return document("BucketLoggingStatus", [])
    grants = [el("Grant", [acl.grantee_xml(g, names), el("Permission", g.permission)])
              for g in grants_of(config)]
    if config.get("key_format") == PARTITIONED:
        key_format = el("PartitionedPrefix", [el("PartitionDateSource", config["date_source"])])
    else:
        key_format = "<SimplePrefix></SimplePrefix>"
    return document("BucketLoggingStatus", [el("LoggingEnabled", [
        el("TargetBucket", config["target_bucket"]),
        el("TargetGrants", grants) if grants else "",
        el("TargetPrefix", config["target_prefix"]),
        el("TargetObjectKeyFormat", [key_format]),
    ])])  # fmt: skip


def grants_of(config: Mapping[str, Any]) -> acl.Acl:
    return acl.decode(config.get("grants") or []) or ()


# --- the target bucket --------------------------------------------------------------------


def check_target(source: BucketRecord, target: BucketRecord, config: Mapping[str, Any]) -> None:
    """Raises the S3 error AWS answers when `target` cannot receive `source`'s logs."""
    if target.owner != source.owner:
        raise InvalidTargetBucketForLogging(
            "The owner for the bucket to be logged and the target bucket must be the same.",
            TargetBucket=target.name,
        )
    if target.region != source.region:
        raise CrossLocationLoggingProhibited(
            TargetBucketLocation=target.region, SourceBucketLocation=source.region
        )
    lock_config = target.settings.get(lock.SETTINGS_KEY) or {}
    if lock.enabled(target.settings) and lock_config.get("mode"):
        raise InvalidTargetBucketForLogging(
            "The target bucket for logging must not have an Object Lock default retention "
            "period.", TargetBucket=target.name,
        )
    if grants_of(config) and access.acls_disabled(target):
        raise s3e.AccessControlListNotSupported(
            "Target grants not allowed for bucket owner enforced buckets"
        )
    if not delivery_allowed(source, target, config["target_prefix"]):
        raise InvalidTargetBucketForLogging(NO_DELIVERY_GRANT, TargetBucket=target.name)


def delivery_allowed(source: BucketRecord, target: BucketRecord, prefix: str) -> bool:
    """May the log delivery of `source` write under `prefix` in `target`? An explicit
    Deny in the target's policy wins; then its Allow, then the LogDelivery group's
    WRITE grant in its ACL."""
    doc = target.settings.get("policy")
    if doc:
        context = {"aws:sourcearn": [f"arn:aws:s3:::{source.name}"],
                   "aws:sourceaccount": [source.owner]}
        decision = policy.evaluate(
            doc, caller=None, service=SERVICE, action="s3:PutObject",
            resource=f"arn:aws:s3:::{target.name}/{prefix}", context=context,
        )
        if decision is not None:
            return decision == "Allow"
    if access.acls_disabled(target):
        return False
    return any(g.group == acl.LOG_DELIVERY and g.permission in (acl.WRITE, acl.FULL_CONTROL)
               for g in acl.bucket_acl(target.settings, target.owner))
