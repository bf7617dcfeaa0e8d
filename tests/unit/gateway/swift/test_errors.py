"""The Swift error table: every public domain error is mapped, every Swift error
has a status and Swift's short body."""

from __future__ import annotations

import inspect

import pytest

from kurastore.gateway.objects import errors as dom
from kurastore.gateway.swift import errors as swe

DOMAIN_ERRORS = [
    cls for _, cls in inspect.getmembers(dom, inspect.isclass)
    if issubclass(cls, Exception) and cls not in (dom.ObjectServiceError, dom.MetadataError)
]


@pytest.mark.parametrize("cls", DOMAIN_ERRORS, ids=lambda c: c.__name__)
def test_every_domain_error_is_in_the_table(cls):
    assert any(base in swe.DOMAIN_TO_SWIFT for base in cls.__mro__), cls


def test_mapping_follows_swift_statuses():
    assert swe.to_swift_error(dom.ObjectNotFound("k")).status == 404
    assert swe.to_swift_error(dom.BucketNotEmpty("b")).status == 409
    assert swe.to_swift_error(dom.PreconditionFailed("x")).status == 412
    assert swe.to_swift_error(dom.InvalidRange(5)).status == 416
    assert swe.to_swift_error(dom.QuorumNotReached("x")).status == 503
    assert swe.to_swift_error(RuntimeError("boom")).status == 500
    bad = swe.to_swift_error(dom.InvalidArgument("size out of range"))
    assert bad.status == 400 and bad.text == "size out of range" and bad.is_plain


def test_generic_bodies_are_swifts():
    assert swe.NotFound().text == (
        "<html><h1>Not Found</h1><p>The resource could not be found.</p></html>")
    assert not swe.NotFound().is_plain
    assert swe.BadRequest("Metadata name too long: X-Object-Meta-x").is_plain
