"""PostObject: the browser-form upload (`POST /{bucket}`, multipart/form-data).

The form carries its own credentials, so the frontend hands the raw request here
without header authentication. The fields before `file` are read (small, capped),
the signature over the base64 policy is verified (SigV4: x-amz-algorithm,
x-amz-credential, x-amz-date, x-amz-signature; SigV2: AWSAccessKeyId, signature),
the signer (or, for an unsigned form, anyone) must be allowed to write the bucket
(access.py), the policy (post_policy.py) must hold, and only then is the file
streamed to the object service, never buffered whole. The form's acl field is
the object's canned ACL.

Rules (AWS's behaviour): fields after `file` are ignored; "${filename}" in key is
the file's name; success_action_redirect answers 303 to it with bucket, key and
etag; else success_action_status 200 or 204 answer empty, 201 answers
PostResponse XML; anything else is 204.
"""

from __future__ import annotations

import dataclasses
import hmac
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError
from multidict import CIMultiDict

from kurastore.gateway.objects import checksums
from kurastore.gateway.objects.api import BodyDigest, PutOptions
from kurastore.gateway.s3 import _sigv2, _sigv4, access, acl, handlers_access, post_policy, sse
from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3 import headers as hdr
from kurastore.gateway.s3.auth import AuthResult, Principal
from kurastore.gateway.s3.context import S3Request
from kurastore.gateway.s3.routes import S3Op
from kurastore.gateway.s3.server_log import S3_KEY
from kurastore.gateway.s3.xml import child_text, el, parse, quoted

if TYPE_CHECKING:
    from kurastore.gateway.objects.service import ObjectService

MAX_FIELD_BYTES = 64 << 10
MAX_FIELDS_BYTES = 1 << 20
MAX_KEY_BYTES = 1024
CHUNK = 1 << 20


async def post_object(
    request: web.Request, service: ObjectService, bucket: str, *, region: str,
    now: float | None = None,
) -> web.StreamResponse:
    """Handle one PostObject; raises S3Errors (rendered by the error middleware)."""
    now = time.time() if now is None else now
    if not request.content_type.lower().startswith("multipart/form-data"):
        raise s3e.MalformedPOSTRequest()
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError):
        raise s3e.MalformedPOSTRequest() from None
    fields, file_part = await _read_fields(reader)
    key_template = fields.get("key")
    if key_template is None:
        raise s3e.InvalidArgument(
            "Bucket POST must contain a field named 'key'.  If it is specified, please check "
            "the order of the fields.", ArgumentName="key", ArgumentValue="",
        )
    user_id = await _authenticate(fields, service, region)
    record = await service.get_bucket(bucket)
    if file_part is None:
        raise s3e.IncorrectNumberOfFilesInPostRequest()
    key = key_template.replace("${filename}", file_part.filename or "")
    request[S3_KEY] = key
    if not key:
        raise s3e.InvalidArgument("User key must have a length greater than 0.")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise s3e.KeyTooLongError()
    s3 = S3Request(
        request=request, service=service, op=S3Op.POST_OBJECT, bucket=bucket, key=key,
        principal=Principal(user_id, "") if user_id is not None else None,
        auth=AuthResult(None, ""), bucket_record=record, region=region, max_keys_limit=0,
    )  # fmt: skip
    await access.authorize(s3)  # as PutObject of this key: ACL WRITE or the policy
    writer = s3.writer
    grants = await handlers_access.request_acl(
        s3, writer, record.owner, CIMultiDict({"x-amz-acl": fields["acl"]}) if "acl" in fields
        else CIMultiDict(),
    )
    if user_id is None and "policy" not in fields:  # an anonymous form needs no policy
        policy = post_policy.Policy(expiration=now + 1)
    else:
        policy = post_policy.decode(fields.get("policy", ""))
        post_policy.evaluate(policy, {**fields, "key": key}, bucket, now)
    opts = _put_options(fields, writer, policy)
    opts = dataclasses.replace(opts, headers={**opts.headers,
                                              **acl.object_headers(grants, writer)})
    version = await service.put_object(bucket, key, _file_body(file_part, policy.length), opts)
    # The checksum a field vouched for, as a PUT echoes its header's.
    echoed = {algorithm: value for algorithm, value in version.checksums.items()
              if checksums.header_name(algorithm) in fields}
    return _answer(request, fields, bucket, key, version.etag,
                   version.version_id if record.versioning else "",
                   {**sse.response_headers(version.encryption), **hdr.checksum_headers(echoed)})


async def _read_fields(reader: MultipartReader) -> tuple[dict[str, str], BodyPartReader | None]:
    """The form fields before `file` (lowercase names, first value wins), and the
    file part positioned at its first byte (None when the form has none)."""
    fields: dict[str, str] = {}
    total = 0
    while True:
        try:
            part = await reader.next()
        # HttpProcessingError: a part's headers are cut off or malformed (InvalidHeader).
        except (ValueError, AssertionError, RuntimeError, HttpProcessingError):
            raise s3e.MalformedPOSTRequest() from None
        if part is None:
            return fields, None
        if not isinstance(part, BodyPartReader):  # a nested multipart is not a form field
            raise s3e.MalformedPOSTRequest()
        name = (part.name or "").lower()
        if not name:  # every form-data part is named (RFC 7578)
            raise s3e.MalformedPOSTRequest()
        if name == "file":
            return fields, part
        data = bytearray()
        while chunk := await part.read_chunk(8192):
            data += chunk
            total += len(chunk)
            if len(data) > MAX_FIELD_BYTES or total > MAX_FIELDS_BYTES:
                raise s3e.MaxMessageLengthExceeded("Your POST form fields are too large.")
        if name not in fields:
            fields[name] = data.decode("utf-8", "replace")


def _require(fields: dict[str, str], *names: str) -> None:
    for name in names:
        if not fields.get(name):
            raise s3e.InvalidArgument(
                f"Bucket POST must contain a field named '{name}'.  If it is specified, please "
                "check the order of the fields.", ArgumentName=name, ArgumentValue="",
            )


async def _authenticate(
    fields: dict[str, str], service: ObjectService, region: str
) -> str | None:
    """The user id of the signer of the policy; None for an unsigned (anonymous) form,
    which then gets what the bucket grants everyone."""
    if "x-amz-signature" in fields or "x-amz-algorithm" in fields:
        _require(fields, "x-amz-algorithm", "x-amz-credential", "x-amz-date",
                 "x-amz-signature", "policy")
        if fields["x-amz-algorithm"] != _sigv4.ALGORITHM:
            raise s3e.InvalidArgument(
                "Only AWS4-HMAC-SHA256 is supported for x-amz-algorithm",
                ArgumentName="x-amz-algorithm", ArgumentValue=fields["x-amz-algorithm"],
            )
        credential = _sigv4.parse_credential(fields["x-amz-credential"])
        if credential is None or credential.service != _sigv4.SERVICE:
            raise s3e.InvalidArgument("Invalid x-amz-credential.", ArgumentName="x-amz-credential",
                                      ArgumentValue=fields["x-amz-credential"])
        if credential.region != region:
            raise s3e.AuthorizationQueryParametersError(
                f"Error parsing the X-Amz-Credential parameter; the region "
                f"'{credential.region}' is wrong; expecting '{region}'", Region=region,
            )
        if _sigv4.parse_amz_date(fields["x-amz-date"]) is None or (
            fields["x-amz-date"][:8] != credential.date
        ):
            raise s3e.InvalidArgument("Invalid x-amz-date.", ArgumentName="x-amz-date",
                                      ArgumentValue=fields["x-amz-date"])
        secret, user_id = await _secret(service, credential.access_key)
        key = _sigv4.signing_key(secret, credential)
        expected = _sigv4.signature(key, fields["policy"])
        if not _sigv4.signatures_equal(expected, fields["x-amz-signature"]):
            raise s3e.SignatureDoesNotMatch(AWSAccessKeyId=credential.access_key,
                                            StringToSign=fields["policy"])
        return user_id
    if "signature" in fields or "awsaccesskeyid" in fields:
        _require(fields, "awsaccesskeyid", "signature", "policy")
        access_key = fields["awsaccesskeyid"]
        secret, user_id = await _secret(service, access_key)
        expected = _sigv2.sign(secret, fields["policy"])
        if not hmac.compare_digest(expected.encode(), fields["signature"].encode()):
            raise s3e.SignatureDoesNotMatch(AWSAccessKeyId=access_key,
                                            StringToSign=fields["policy"])
        return user_id
    return None


async def _secret(service: ObjectService, access_key: str) -> tuple[str, str]:
    found = await service.lookup_secret(access_key)
    if found is None:
        raise s3e.InvalidAccessKeyId(AWSAccessKeyId=access_key)
    return found


async def _file_body(
    part: BodyPartReader, length: post_policy.LengthRange
) -> AsyncIterator[bytes]:
    size = 0
    while chunk := await part.read_chunk(CHUNK):
        size += len(chunk)
        length.check_running(size)
        yield chunk


def _put_options(fields: dict[str, str], user_id: str, policy: post_policy.Policy) -> PutOptions:
    form = CIMultiDict(fields)
    if "acl" in fields:  # the form's canned ACL is the header's x-amz-acl
        form["x-amz-acl"] = fields["acl"]
    # Content-MD5 and x-amz-checksum-<algo> fields vouch for the file, as headers do.
    spec = hdr.integrity_spec(CIMultiDict(
        (n, v) for n, v in fields.items()
        if n == "content-md5" or checksums.algorithm_from_header(n)
    ))  # fmt: skip
    integrity = hdr.body_check(spec, dict)

    def check(digest: BodyDigest) -> None:
        policy.length.check_final(digest.size)
        integrity(digest)

    return PutOptions(
        owner=user_id,
        content_type=hdr.content_type(form),
        headers=hdr.stored_headers(form),
        user_meta=hdr.user_metadata(form),
        tags=_form_tags(fields.get("tagging")),
        storage_class=hdr.storage_class(form),
        checksum_algorithms=spec.algorithms,
        check=check,
        encryption=sse.write_request(form),
    )


def _form_tags(text: str | None) -> dict[str, str]:
    """The `tagging` field: a <Tagging><TagSet><Tag>... document, as PutObjectTagging."""
    if not text:
        return {}
    doc = parse(text.encode(), "Tagging")
    tag_set = doc.find("TagSet")
    tags: dict[str, str] = {}
    for tag in [] if tag_set is None else tag_set.findall("Tag"):
        name, value = child_text(tag, "Key"), child_text(tag, "Value", "")
        if name is None or name in tags:
            raise s3e.InvalidTag("Cannot provide multiple Tags with the same key")
        tags[name] = value or ""
    return hdr.validate_tags(tags)


def _answer(
    request: web.Request, fields: dict[str, str], bucket: str, key: str, etag: str,
    version_id: str, extra_headers: dict[str, str],
) -> web.StreamResponse:
    location = f"{request.scheme}://{request.host}/{quote(bucket)}/{quote(key)}"
    headers = {"ETag": quoted(etag), "Location": location, **extra_headers}
    if version_id:
        headers["x-amz-version-id"] = version_id
    redirect = fields.get("success_action_redirect") or fields.get("redirect")
    if redirect:
        parts = urlsplit(redirect)
        if parts.scheme in ("http", "https"):
            extra = f"bucket={quote(bucket)}&key={quote(key)}&etag={quote(quoted(etag))}"
            query = f"{parts.query}&{extra}" if parts.query else extra
            headers["Location"] = urlunsplit(parts._replace(query=query))
            return web.Response(status=303, headers=headers)
    status = fields.get("success_action_status", "")
    if status == "201":
        # AWS answers this one document without the S3 namespace.
        body = '<?xml version="1.0" encoding="UTF-8"?>\n' + el("PostResponse", [
            el("Location", location), el("Bucket", bucket), el("Key", key),
            el("ETag", quoted(etag)),
        ])  # fmt: skip
        return web.Response(status=201, body=body.encode(), headers=headers,
                            content_type="application/xml")
    return web.Response(status=200 if status == "200" else 204, headers=headers)
