"""Lifecycle rules and the lifecycle worker on a real object service (SQLite, in-memory
pods): what expires when, and what the pass removes, keeps and aborts."""

from __future__ import annotations

import calendar
import time

from kurastore.gateway.maintenance.lifecycle import lifecycle_once
from kurastore.gateway.objects import lifecycle as lc
from kurastore.gateway.objects import retention
from kurastore.metadata import ObjectVersion

DAY = 86_400


def _rule(rule_id: str, prefix: str = "", **actions: object) -> dict:
    return {"id": rule_id, "status": "Enabled", "prefix": prefix, "filter": None,
            "expiration": None, "noncurrent": None, "abort_days": None, **actions}


def _version(key: str, last_modified: float, **fields: object) -> ObjectVersion:
    return ObjectVersion(bucket="b", key=key, version_id="null", object_id="0" * 32, size=10,
                         etag="e", last_modified=last_modified, **fields)  # type: ignore[arg-type]


def test_days_round_up_to_the_next_midnight_utc() -> None:
    written = calendar.timegm((2026, 1, 15, 10, 30, 0))
    rules = [_rule("r", expiration={"days": 3})]
    when, rule_id = lc.current_expiry(rules, _version("k", written))  # type: ignore[misc]
    assert when == calendar.timegm((2026, 1, 19, 0, 0, 0)) and rule_id == "r"


def test_filters_prefix_tags_size_and_the_earliest_rule_wins() -> None:
    tagged = {"filter": {"form": "and", "prefix": "logs/", "tags": [["t", "1"]],
                         "gt": 5, "lt": None}}
    rules = [_rule("late", expiration={"days": 30}),
             _rule("tagged", expiration={"days": 1}, **tagged),
             _rule("off", expiration={"days": 1}, status="Disabled")]
    now = 1_700_000_000.0
    assert lc.current_expiry(rules, _version("logs/a", now, tags={"t": "1"}))[1] == "tagged"
    assert lc.current_expiry(rules, _version("logs/a", now, tags={"t": "2"}))[1] == "late"
    assert lc.current_expiry(rules, _version("other", now, tags={"t": "1"}))[1] == "late"
    assert lc.current_expiry(rules[1:], _version("logs/a", now)) is None


async def test_pass_expires_current_versions_under_the_prefix(cluster) -> None:
    await cluster.put("tmp/a", b"a")
    await cluster.put("keep/b", b"b")
    settings = {lc.SETTINGS_KEY: [_rule("tmp", "tmp/", expiration={"days": 1})]}
    await cluster.service.update_bucket("b", settings=settings)
    assert await lifecycle_once(cluster.service) == 0  # not due yet
    assert await lifecycle_once(cluster.service, now=cluster_now() + 2 * DAY) == 1
    page = await cluster.service.list_objects("b")
    assert [v.key for v in page.entries] == ["keep/b"]


async def test_a_shortened_day_counts_in_its_own_units(cluster) -> None:
    await cluster.put("k", b"x")
    rules = [_rule("fast", expiration={"days": 2})]
    await cluster.service.update_bucket("b", settings={lc.SETTINGS_KEY: rules})
    now = cluster_now()  # a shortened day has no midnight: two of them are 20 s
    assert await lifecycle_once(cluster.service, now=now + 15, day_s=10) == 0
    assert await lifecycle_once(cluster.service, now=now + 21, day_s=10) == 1


async def test_versioned_bucket_gets_markers_then_noncurrent_versions_go(cluster) -> None:
    await cluster.service.update_bucket("b", versioning="Enabled")
    for body in (b"v1", b"v2", b"v3"):
        await cluster.put("k", body)
    rules = [_rule("cur", expiration={"days": 1}),
             _rule("old", noncurrent={"days": 1, "newer": 1})]
    await cluster.service.update_bucket("b", settings={lc.SETTINGS_KEY: rules})
    assert await lifecycle_once(cluster.service, now=cluster_now() + 3 * DAY) == 2
    versions = (await cluster.service.list_versions("b")).entries
    # The current one is hidden behind a marker; one noncurrent version is kept.
    assert versions[0].is_delete_marker and versions[0].is_latest
    assert [v.is_delete_marker for v in versions] == [True, False, False]


async def test_lone_delete_markers_and_stale_uploads_go(cluster) -> None:
    await cluster.service.update_bucket("b", versioning="Enabled")
    await cluster.put("gone", b"x")
    await cluster.service.delete_object("b", "gone")
    first = (await cluster.service.list_versions("b")).entries[-1]
    await cluster.service.delete_object("b", "gone", version_id=first.version_id)
    upload = await cluster.service.create_upload("b", "mpu/x")
    rules = [_rule("dm", expiration={"delete_marker": True}), _rule("mpu", abort_days=1)]
    await cluster.service.update_bucket("b", settings={lc.SETTINGS_KEY: rules})
    assert await lifecycle_once(cluster.service, now=cluster_now() + 2 * DAY) == 2
    assert (await cluster.service.list_versions("b")).entries == ()
    assert all(u.upload_id != upload.upload_id
               for u in (await cluster.service.list_uploads("b")).uploads)


async def test_locked_versions_are_never_removed(cluster) -> None:
    until = retention.format_date(cluster_now() + 30 * DAY)
    await cluster.put("held", b"x", headers={retention.LEGAL_HOLD: "ON"})
    await cluster.put("kept", b"y", headers={retention.MODE: "COMPLIANCE",
                                             retention.UNTIL: until})
    rules = [_rule("all", expiration={"days": 1})]
    await cluster.service.update_bucket("b", settings={lc.SETTINGS_KEY: rules})
    assert await lifecycle_once(cluster.service, now=cluster_now() + 2 * DAY) == 0
    assert await lifecycle_once(cluster.service, now=cluster_now() + 40 * DAY) == 1
    keys = [v.key for v in (await cluster.service.list_objects("b")).entries]
    assert keys == ["held"]  # the retention ran out after 30 days, the hold did not


def cluster_now() -> float:
    return time.time()
