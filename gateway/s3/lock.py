"""S3 Object Lock: the bucket's configuration (Put/GetObjectLockConfiguration),
per-version retention and legal hold (Put/GetObjectRetention,
Put/GetObjectLegalHold), the x-amz-object-lock-* headers of PutObject and
CreateMultipartUpload, and the check every version removal makes.

The bucket keeps {"enabled": True, "mode": ..., "days" | "years": ...} in its
settings under "object_lock"; a version keeps its state in its stored headers
(objects/retention.py says how, and when it protects the version).

Rules (AWS's): a bucket gets Object Lock at creation
(x-amz-bucket-object-lock-enabled, which also enables versioning) or later
while versioning is Enabled (InvalidBucketState otherwise); its versioning can
then never be suspended. Retention and legal hold on a bucket without Object
Lock are InvalidRequest. A retention in effect may be lengthened; shortening
it or changing its mode needs GOVERNANCE mode and
x-amz-bypass-governance-retention: true (COMPLIANCE: never), else AccessDenied;
the header counts only for a caller with s3:BypassGovernanceRetention on the object
(access.may_bypass_governance: the bucket owner unless the policy denies it, others
by a policy Allow).
A new version without lock headers gets the bucket's default retention.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from kurastore.gateway.objects import retention as ret
from kurastore.gateway.s3 import access
from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3 import headers as hdr
from kurastore.gateway.s3.context import Handler, S3Request, empty_response, xml_response
from kurastore.gateway.s3.routes import S3Op
from kurastore.gateway.s3.xml import child_text, document, el, parse
from kurastore.metadata import ObjectVersion

SETTINGS_KEY = "object_lock"
BYPASS = "x-amz-bypass-governance-retention"
DAY_S = 86_400
MISSING = "Bucket is missing Object Lock Configuration"


def enabled(settings: Mapping[str, Any]) -> bool:
    config = settings.get(SETTINGS_KEY)
    return bool(isinstance(config, dict) and config.get("enabled"))


def bypass(s3: S3Request, key: str) -> bool:
    """May this request override a GOVERNANCE retention on `key`?"""
    asked = s3.headers.get(BYPASS, "").strip().lower() == "true"
    return asked and access.may_bypass_governance(s3, key)


def _settings(s3: S3Request) -> dict[str, Any]:
    return dict(s3.bucket_record.settings) if s3.bucket_record else {}


# --- writes: PutObject, CreateMultipartUpload ----------------------------------------------


def write_headers(s3: S3Request) -> dict[str, str]:
    """The lock state a new version gets: from its request headers, else the bucket's
    default retention. InvalidRequest when the bucket has no Object Lock."""
    h = s3.headers
    mode, until = h.get(ret.MODE), h.get(ret.UNTIL)
    hold = h.get(ret.LEGAL_HOLD)
    settings = _settings(s3)
    if mode is None and until is None and hold is None:
        return _default_retention(settings)
    if not enabled(settings):
        raise s3e.InvalidRequest(MISSING)
    out: dict[str, str] = {}
    if (mode is None) != (until is None):
        raise s3e.InvalidArgument(
            "x-amz-object-lock-retain-until-date and x-amz-object-lock-mode must both be "
            "supplied"
        )
    if mode is not None and until is not None:
        if mode not in ret.MODES:
            raise s3e.InvalidArgument("Unknown wormMode directive.")
        try:
            when = ret.parse_date(until)
        except ValueError as exc:
            raise s3e.InvalidArgument("The retain until date must be ISO 8601.") from exc
        if when <= time.time():
            raise s3e.InvalidArgument("The retain until date must be in the future!")
        out.update({ret.MODE: mode, ret.UNTIL: ret.format_date(when)})
    else:
        out.update(_default_retention(settings))
    if hold is not None:
        if hold not in ("ON", "OFF"):
            raise s3e.InvalidArgument("Legal Hold must be either of 'ON' or 'OFF'")
        out[ret.LEGAL_HOLD] = hold
    return out


def _default_retention(settings: Mapping[str, Any]) -> dict[str, str]:
    config = settings.get(SETTINGS_KEY) or {}
    if not enabled(settings) or not config.get("mode"):
        return {}
    days = int(config.get("days") or 0) + 365 * int(config.get("years") or 0)
    return {ret.MODE: config["mode"], ret.UNTIL: ret.format_date(time.time() + days * DAY_S)}


def removal_guard(s3: S3Request) -> Callable[[ObjectVersion], bool] | None:
    """What a delete by version id passes as `refuse`: the store asks it about the
    version in the removal's own transaction (VersionProtected, answered AccessDenied),
    so a retention or legal hold set meanwhile cannot be slipped past. None when the
    bucket has no Object Lock."""
    if not enabled(_settings(s3)):
        return None
    return lambda version: ret.protected(version, bypass_governance=bypass(s3, version.key))


# --- the bucket configuration ----------------------------------------------------------------


async def put_object_lock_config(s3: S3Request) -> web.StreamResponse:
    body = await s3.read_xml_body()
    hdr.check_small_body(hdr.integrity_spec(s3.headers), body)
    doc = parse(body, "ObjectLockConfiguration")
    if child_text(doc, "ObjectLockEnabled") != "Enabled":
        raise s3e.MalformedXML()
    config: dict[str, Any] = {"enabled": True}
    rule = doc.find("Rule")
    if rule is not None:
        default = rule.find("DefaultRetention")
        if default is None:
            raise s3e.MalformedXML()
        mode = child_text(default, "Mode")
        days, years = child_text(default, "Days"), child_text(default, "Years")
        if mode not in ret.MODES or (days is None) == (years is None):
            raise s3e.MalformedXML()
        try:
            period = int(days if days is not None else years)  # type: ignore[arg-type]
        except ValueError as exc:
            raise s3e.MalformedXML() from exc
        if period <= 0:
            raise s3e.InvalidRetentionPeriod()
        config.update({"mode": mode, "days" if days is not None else "years": period})
    record = s3.bucket_record
    settings = _settings(s3)
    if not enabled(settings) and (record is None or record.versioning != "Enabled"):
        raise s3e.InvalidBucketState(
            "Versioning must be 'Enabled' on the bucket to apply a Object Lock configuration"
        )
    settings[SETTINGS_KEY] = config
    await s3.service.update_bucket(s3.bucket, settings=settings)
    return empty_response()


async def get_object_lock_config(s3: S3Request) -> web.StreamResponse:
    settings = _settings(s3)
    if not enabled(settings):
        raise s3e.ObjectLockConfigurationNotFoundError(BucketName=s3.bucket)
    config = settings[SETTINGS_KEY]
    rule = None
    if config.get("mode"):
        rule = el("Rule", [el("DefaultRetention", [
            el("Mode", config["mode"]), el("Days", config.get("days")),
            el("Years", config.get("years")),
        ])])  # fmt: skip
    return xml_response(document("ObjectLockConfiguration", [
        el("ObjectLockEnabled", "Enabled"), rule or "",
    ]))  # fmt: skip


# --- retention and legal hold of one version ---------------------------------------------------


def _version_id(s3: S3Request) -> str | None:
    return s3.query.get("versionId") or None


def _require_lock(s3: S3Request) -> None:
    if not enabled(_settings(s3)):
        raise s3e.InvalidRequest(MISSING)


async def put_object_retention(s3: S3Request) -> web.StreamResponse:
    _require_lock(s3)
    body = await s3.read_xml_body()
    hdr.check_small_body(hdr.integrity_spec(s3.headers), body)
    doc = parse(body, "Retention")
    mode, until_text = child_text(doc, "Mode"), child_text(doc, "RetainUntilDate")
    if not mode and not until_text:  # an empty <Retention/> removes the retention
        return await _remove_retention(s3)
    if mode not in ret.MODES or not until_text:
        raise s3e.MalformedXML()
    try:
        until = ret.parse_date(until_text)
    except ValueError as exc:
        raise s3e.MalformedXML() from exc
    if until <= time.time():
        raise s3e.InvalidArgument("The retain until date must be in the future!")
    version = await s3.service.head_object(s3.bucket, s3.key, version_id=_version_id(s3))
    held = ret.retention(version.headers)
    if held is not None and held[1] > time.time():
        old_mode, old_until = held
        weaker = mode != old_mode or until < old_until
        if weaker and (old_mode == "COMPLIANCE" or not bypass(s3, s3.key)):
            raise s3e.AccessDenied("Access Denied because object protected by object lock.")
    headers = {**version.headers, ret.MODE: mode, ret.UNTIL: ret.format_date(until)}
    updated = await s3.service.put_object_headers(s3.bucket, s3.key, version.version_id, headers)
    return empty_response(headers=hdr.version_headers(updated.version_id, s3.is_versioned))


async def _remove_retention(s3: S3Request) -> web.StreamResponse:
    """Only an expired retention, or a GOVERNANCE one with the bypass header, may be
    removed; COMPLIANCE never."""
    version = await s3.service.head_object(s3.bucket, s3.key, version_id=_version_id(s3))
    held = ret.retention(version.headers)
    if held is not None and held[1] > time.time():
        if held[0] == "COMPLIANCE" or not bypass(s3, s3.key):
            raise s3e.AccessDenied("Access Denied because object protected by object lock.")
    headers = {k: v for k, v in version.headers.items() if k not in (ret.MODE, ret.UNTIL)}
    updated = await s3.service.put_object_headers(s3.bucket, s3.key, version.version_id, headers)
    return empty_response(headers=hdr.version_headers(updated.version_id, s3.is_versioned))


async def get_object_retention(s3: S3Request) -> web.StreamResponse:
    _require_lock(s3)
    version = await s3.service.head_object(s3.bucket, s3.key, version_id=_version_id(s3))
    held = ret.retention(version.headers)
    if held is None:
        raise s3e.NoSuchObjectLockConfiguration()
    return xml_response(document("Retention", [
        el("Mode", held[0]), el("RetainUntilDate", ret.format_date(held[1])),
    ]))  # fmt: skip


async def put_object_legal_hold(s3: S3Request) -> web.StreamResponse:
    _require_lock(s3)
    body = await s3.read_xml_body()
    hdr.check_small_body(hdr.integrity_spec(s3.headers), body)
    status = child_text(parse(body, "LegalHold"), "Status")
    if status not in ("ON", "OFF"):
        raise s3e.MalformedXML()
    version = await s3.service.head_object(s3.bucket, s3.key, version_id=_version_id(s3))
    headers = {**version.headers, ret.LEGAL_HOLD: status}
    updated = await s3.service.put_object_headers(s3.bucket, s3.key, version.version_id, headers)
    return empty_response(headers=hdr.version_headers(updated.version_id, s3.is_versioned))


async def get_object_legal_hold(s3: S3Request) -> web.StreamResponse:
    _require_lock(s3)
    version = await s3.service.head_object(s3.bucket, s3.key, version_id=_version_id(s3))
    status = version.headers.get(ret.LEGAL_HOLD)
    if status is None:
        raise s3e.NoSuchObjectLockConfiguration()
    return xml_response(document("LegalHold", [el("Status", status)]))


HANDLERS: dict[S3Op, Handler] = {
    S3Op.PUT_OBJECT_LOCK_CONFIG: put_object_lock_config,
    S3Op.GET_OBJECT_LOCK_CONFIG: get_object_lock_config,
    S3Op.PUT_OBJECT_RETENTION: put_object_retention,
    S3Op.GET_OBJECT_RETENTION: get_object_retention,
    S3Op.PUT_OBJECT_LEGAL_HOLD: put_object_legal_hold,
    S3Op.GET_OBJECT_LEGAL_HOLD: get_object_legal_hold,
}
