"""S3 access control lists: grants, canned ACLs, x-amz-grant-* headers, the
AccessControlPolicy document, how ACLs are stored, and what they permit.

An ACL is a tuple of `Grant`s; its owner is the bucket's or the object's owner,
kept where the bucket or version keeps it. Rules (AWS's):
- A request sets an ACL either with x-amz-acl (canned) or with x-amz-grant-*
  headers, never both; either replaces the whole ACL. No ACL given means the
  owner's FULL_CONTROL, which is also what nothing stored means.
- Grantees are canonical users (their id must exist), e-mail addresses (resolved
  to a canonical user, else UnresolvableGrantByEmailAddress) and the groups
  AllUsers, AuthenticatedUsers and LogDelivery. Answers list group grants first.
- `permits`: the owner may do everything; a grant of the permission or of
  FULL_CONTROL to the caller's id, to AuthenticatedUsers (any valid signature)
  or to AllUsers (anyone, even without credentials) permits it.
- Stored form: a bucket keeps its grants in settings["acl"]; a version keeps
  them JSON-encoded in headers[OBJECT_ACL_HEADER] (never sent to clients).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from xml.etree.ElementTree import Element

from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3.xml import XSI, child_text, document, el, owner, parse

READ, WRITE, READ_ACP, WRITE_ACP, FULL_CONTROL = (
    "READ", "WRITE", "READ_ACP", "WRITE_ACP", "FULL_CONTROL",
)  # fmt: skip
PERMISSIONS = (READ, WRITE, READ_ACP, WRITE_ACP, FULL_CONTROL)
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"
AUTHENTICATED_USERS = "http://acs.amazonaws.com/groups/global/AuthenticatedUsers"
LOG_DELIVERY = "http://acs.amazonaws.com/groups/s3/LogDelivery"
GROUPS = frozenset({ALL_USERS, AUTHENTICATED_USERS, LOG_DELIVERY})
PUBLIC_GROUPS = frozenset({ALL_USERS, AUTHENTICATED_USERS})
OBJECT_ACL_HEADER = "x-kurastore-acl"
GRANT_HEADERS = {
    "x-amz-grant-read": READ, "x-amz-grant-write": WRITE, "x-amz-grant-read-acp": READ_ACP,
    "x-amz-grant-write-acp": WRITE_ACP, "x-amz-grant-full-control": FULL_CONTROL,
}  # fmt: skip
CANNED = frozenset({
    "private", "public-read", "public-read-write", "authenticated-read", "aws-exec-read",
    "bucket-owner-read", "bucket-owner-full-control", "log-delivery-write",
})  # fmt: skip
_GRANTEE = re.compile(r'\s*(id|emailAddress|uri)\s*=\s*("([^"]*)"|[^,\s]*)\s*', re.IGNORECASE)


@dataclass(frozen=True)
class Grant:
    permission: str
    user_id: str = ""  # a canonical user...
    group: str = ""  # ...or a group URI


Acl = tuple[Grant, ...]
# (kind, value) -> canonical user id; kind is "id" or "email". Raises the S3 error.
Resolver = Callable[[str, str], Awaitable[str]]


def default(owner_id: str) -> Acl:
    return (Grant(FULL_CONTROL, user_id=owner_id),)


def canned(name: str, owner_id: str, bucket_owner: str) -> Acl:
    """The grants of a canned ACL for a resource of `owner_id` in a bucket of `bucket_owner`."""
    mine = Grant(FULL_CONTROL, user_id=owner_id)
    if name in ("private", "aws-exec-read"):
        return (mine,)
    if name == "public-read":
        return (Grant(READ, group=ALL_USERS), mine)
    if name == "public-read-write":
        return (Grant(READ, group=ALL_USERS), Grant(WRITE, group=ALL_USERS), mine)
    if name == "authenticated-read":
        return (Grant(READ, group=AUTHENTICATED_USERS), mine)
    if name == "log-delivery-write":
        return (Grant(WRITE, group=LOG_DELIVERY), Grant(READ_ACP, group=LOG_DELIVERY), mine)
    if name in ("bucket-owner-read", "bucket-owner-full-control"):
        if bucket_owner == owner_id:
            return (mine,)
        perm = READ if name == "bucket-owner-read" else FULL_CONTROL
        return (mine, Grant(perm, user_id=bucket_owner))
    raise s3e.InvalidArgument(ArgumentName="x-amz-acl", ArgumentValue=name)


def has_acl_headers(headers: Mapping[str, str]) -> bool:
    return "x-amz-acl" in headers or any(name in headers for name in GRANT_HEADERS)


async def from_headers(
    headers: Mapping[str, str], owner_id: str, bucket_owner: str, resolve: Resolver
) -> Acl | None:
    """The ACL a request's x-amz-acl or x-amz-grant-* headers set, None when none."""
    canned_name = headers.get("x-amz-acl")
    grant_values = [
        (name, value) for name in GRANT_HEADERS if name in headers
        for value in (headers.getall(name) if hasattr(headers, "getall") else [headers[name]])
    ]
    if canned_name is not None and grant_values:
        raise s3e.InvalidRequest("Specifying both Canned ACLs and Header Grants is not allowed")
    if canned_name is not None:
        return canned(canned_name.strip(), owner_id, bucket_owner)
    if not grant_values:
        return None
    grants: list[Grant] = []
    for name, value in grant_values:
        for kind, grantee in _grantees(value):
            grants.append(await _grant(GRANT_HEADERS[name], kind, grantee, resolve))
    return tuple(grants)


def _grantees(value: str) -> Iterable[tuple[str, str]]:
    """(kind, value) pairs of a grant header: 'id="…", uri=…, emailAddress=…'."""
    pos = 0
    while pos < len(value):
        match = _GRANTEE.match(value, pos)
        if match is None:
            raise s3e.InvalidArgument("Invalid grant header.", ArgumentValue=value[:200])
        quoted, bare = match.group(3), match.group(2)
        yield match.group(1).lower(), quoted if quoted is not None else bare
        pos = match.end()
        if pos < len(value):
            if value[pos] != ",":
                raise s3e.InvalidArgument("Invalid grant header.", ArgumentValue=value[:200])
            pos += 1


async def _grant(permission: str, kind: str, value: str, resolve: Resolver) -> Grant:
    if kind == "uri":
        if value not in GROUPS:
            raise s3e.InvalidArgument("Invalid group uri", ArgumentValue=value)
        return Grant(permission, group=value)
    return Grant(permission, user_id=await resolve("email" if kind == "emailaddress" else "id",
                                                   value))


async def from_document(body: bytes, resolve: Resolver) -> tuple[str | None, Acl]:
    """(owner id or None, grants) of an AccessControlPolicy body."""
    try:
        doc = parse(body, "AccessControlPolicy")
    except s3e.MalformedXML:
        raise s3e.MalformedACLError() from None
    owner_node = doc.find("Owner")
    owner_id = child_text(owner_node, "ID") if owner_node is not None else None
    listing = doc.find("AccessControlList")
    grants: list[Grant] = []
    for node in [] if listing is None else listing.findall("Grant"):
        grant = await grant_of(node, resolve)
        if grant is None:
            raise s3e.MalformedACLError()
        grants.append(grant)
    return owner_id, tuple(grants)


async def grant_of(node: Element, resolve: Resolver,
                   permissions: tuple[str, ...] = PERMISSIONS) -> Grant | None:
    """The grant of a <Grant> element (Grantee and Permission); None when it is not one.
    Raises the S3 error of a grantee that names no one."""
    grantee, permission = node.find("Grantee"), child_text(node, "Permission")
    if grantee is None or permission not in permissions:
        return None
    kind = next((v for k, v in grantee.attrib.items() if k.endswith("type")), "")
    if kind == "Group" or (not kind and grantee.find("URI") is not None):
        return await _grant(permission, "uri", child_text(grantee, "URI", "") or "", resolve)
    if kind == "AmazonCustomerByEmail" or (not kind and grantee.find("EmailAddress")
                                           is not None):
        email = child_text(grantee, "EmailAddress", "") or ""
        return await _grant(permission, "emailaddress", email, resolve)
    if kind in ("CanonicalUser", "") and grantee.find("ID") is not None:
        return await _grant(permission, "id", child_text(grantee, "ID", "") or "", resolve)
    return None


def grantee_xml(grant: Grant, names: Mapping[str, str]) -> str:
    """A <Grantee> element: a group by URI, else a canonical user with its name."""
    if grant.group:
        return f'<Grantee xmlns:xsi="{XSI}" xsi:type="Group">' + el("URI", grant.group) + (
            "</Grantee>"
        )
    return (f'<Grantee xmlns:xsi="{XSI}" xsi:type="CanonicalUser">' + el("ID", grant.user_id)
            + el("DisplayName", names.get(grant.user_id, grant.user_id)) + "</Grantee>")


def render(owner_id: str, names: Mapping[str, str], acl: Acl) -> bytes:
    """The AccessControlPolicy answer; `names` gives display names by user id."""
    ordered = [g for g in acl if g.group] + [g for g in acl if not g.group]
    grants = [el("Grant", [grantee_xml(g, names), el("Permission", g.permission)])
              for g in ordered]
    return document("AccessControlPolicy", [
        owner(owner_id, names.get(owner_id, owner_id)), el("AccessControlList", grants),
    ])  # fmt: skip


def user_ids(acl: Acl) -> set[str]:
    return {g.user_id for g in acl if g.user_id}


# --- storage --------------------------------------------------------------------------


def encode(acl: Acl) -> list[list[str]]:
    return [[g.permission, "uri" if g.group else "id", g.group or g.user_id] for g in acl]


def decode(stored: object) -> Acl | None:
    """Grants from `encode`'s form (or its JSON text); None when nothing is stored."""
    if stored is None:
        return None
    items = json.loads(stored) if isinstance(stored, str) else stored
    return tuple(
        Grant(perm, group=value) if kind == "uri" else Grant(perm, user_id=value)
        for perm, kind, value in items
    )


def bucket_acl(settings: Mapping[str, object], owner_id: str) -> Acl:
    return decode(settings.get("acl")) or (() if "acl" in settings else default(owner_id))


def object_acl(headers: Mapping[str, str], owner_id: str) -> Acl:
    stored = headers.get(OBJECT_ACL_HEADER)
    return default(owner_id) if stored is None else decode(stored) or ()


def object_headers(acl: Acl | None, owner_id: str) -> dict[str, str]:
    """What a version stores for `acl`: nothing for the default."""
    if acl is None or acl == default(owner_id):
        return {}
    return {OBJECT_ACL_HEADER: json.dumps(encode(acl), separators=(",", ":"))}


# --- checks ---------------------------------------------------------------------------


def permits(acl: Acl, owner_id: str, caller: str | None, permission: str, *,
            ignore_public: bool = False) -> bool:
    """May `caller` (a user id; None when anonymous) do what `permission` allows?"""
    if caller is not None and caller == owner_id:
        return True
    for g in acl:
        if g.permission != permission and g.permission != FULL_CONTROL:
            continue
        if g.group in PUBLIC_GROUPS and ignore_public:
            continue
        if g.group == ALL_USERS or (g.group == AUTHENTICATED_USERS and caller is not None):
            return True
        if g.user_id and g.user_id == caller:
            return True
    return False


def is_public(acl: Acl) -> bool:
    return any(g.group in PUBLIC_GROUPS for g in acl)


