"""Bucket default encryption on the wire: PutBucketEncryption's
ServerSideEncryptionConfiguration in, the same document out for GetBucketEncryption,
and the one stored shape the write path reads back (`default_encryption`).

Stored in the bucket's settings under "encryption" as exactly
{"algorithm": "AES256" | "aws:kms" | "aws:kms:dsse", "kms_key_id": str,
"bucket_key_enabled": bool}; kms_key_id is "" when none was named (the write path
then uses the AWS managed key).

Rules (Amazon S3 API reference, PutBucketEncryption; AWS's answers where the
reference is silent):
- Exactly one Rule, holding ApplyServerSideEncryptionByDefault with an SSEAlgorithm
  of AES256, aws:kms or aws:kms:dsse. No rule, two rules, no default, an unknown
  algorithm or a BucketKeyEnabled that is not a boolean is MalformedXML (the
  document does not validate against AWS's schema).
- KMSMasterKeyID belongs to the aws:kms* algorithms only; with AES256 it is 400
  InvalidArgument naming ApplyServerSideEncryptionByDefault.
- BlockedEncryptionTypes with SSE-C is refused (NotImplemented) rather than stored
  and ignored: the write path does not block SSE-C. NONE blocks nothing and is
  accepted.
- GetBucketEncryption always renders BucketKeyEnabled, as AWS does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from xml.etree.ElementTree import Element

from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3.xml import child_text, document, el, parse, parse_bool

SETTINGS_KEY = "encryption"
AES256 = "AES256"
KMS_ALGORITHMS = ("aws:kms", "aws:kms:dsse")
ALGORITHMS = (AES256, *KMS_ALGORITHMS)
KMS_KEY_NOT_APPLICABLE = (
    "a KMSMasterKeyID is not applicable if the default sse algorithm is not aws:kms or "
    "aws:kms:dsse"
)


def parse_config(body: bytes) -> dict[str, Any]:
    """The stored shape of a PutBucketEncryption body; raises the S3 error AWS answers."""
    doc = parse(body, "ServerSideEncryptionConfiguration")
    rules = doc.findall("Rule")
    if len(rules) != 1:
        raise s3e.MalformedXML()
    rule = rules[0]
    default = rule.find("ApplyServerSideEncryptionByDefault")
    if default is None:
        raise s3e.MalformedXML()
    algorithm = (child_text(default, "SSEAlgorithm") or "").strip()
    if algorithm not in ALGORITHMS:
        raise s3e.MalformedXML()
    key_id = child_text(default, "KMSMasterKeyID")
    if key_id is not None:
        if algorithm not in KMS_ALGORITHMS:
            raise s3e.InvalidArgument(
                KMS_KEY_NOT_APPLICABLE, ArgumentName="ApplyServerSideEncryptionByDefault"
            )
        if not key_id.strip():
            raise s3e.MalformedXML()  # an empty element names no key
    _check_blocked_types(rule)
    return {
        "algorithm": algorithm,
        "kms_key_id": (key_id or "").strip(),
        "bucket_key_enabled": parse_bool(child_text(rule, "BucketKeyEnabled")),
    }


def _check_blocked_types(rule: Element) -> None:
    blocked = rule.find("BlockedEncryptionTypes")
    if blocked is None:
        return
    for node in blocked.findall("EncryptionType"):
        value = (node.text or "").strip()
        if value == "SSE-C":
            raise s3e.NotImplemented_("Blocking SSE-C writes is not supported.")
        if value != "NONE":
            raise s3e.MalformedXML()


def render_config(config: Mapping[str, Any]) -> bytes:
    """GetBucketEncryption's answer for a stored configuration."""
    by_default = [
        el("SSEAlgorithm", config["algorithm"]),
        el("KMSMasterKeyID", config.get("kms_key_id") or None),
    ]
    rule = [
        el("ApplyServerSideEncryptionByDefault", by_default),
        el("BucketKeyEnabled", bool(config.get("bucket_key_enabled"))),
    ]
    return document("ServerSideEncryptionConfiguration", [el("Rule", rule)])


def default_encryption(settings: Mapping[str, Any]) -> dict[str, Any] | None:
    """The bucket's default encryption from its settings, or None when it has none.

    Always the full stored shape; anything else under the key (not written by
    PutBucketEncryption) counts as none rather than as a half-read configuration.
    """
    stored = settings.get(SETTINGS_KEY)
    if not isinstance(stored, Mapping) or stored.get("algorithm") not in ALGORITHMS:
        return None
    key_id = stored.get("kms_key_id") or ""
    return {
        "algorithm": stored["algorithm"],
        "kms_key_id": key_id if isinstance(key_id, str) else "",
        "bucket_key_enabled": stored.get("bucket_key_enabled") is True,
    }
