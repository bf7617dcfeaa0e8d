"""Fuzz the XML request bodies: CompleteMultipartUpload, DeleteObjects,
PutBucketTagging, PutObjectTagging, PutBucketVersioning, PutBucketAcl and
CreateBucketConfiguration get random trees over their own vocabulary, malformed
bytes, entity declarations (internal, external, exponential), deep nesting and
huge documents. Every answer is success or S3's XML error (MalformedXML and
friends), never a 500 or a hang."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import quote

import pytest
from fuzz.target import Target, fuzz_settings
from fuzz.wire import assert_s3_answer, send
from hypothesis import given
from hypothesis import strategies as st

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
TAGS = ["CompleteMultipartUpload", "Part", "PartNumber", "ETag", "ChecksumCRC32", "Delete",
        "Object", "Key", "VersionId", "Quiet", "Tagging", "TagSet", "Tag", "Value",
        "VersioningConfiguration", "Status", "MfaDelete", "CreateBucketConfiguration",
        "LocationConstraint", "AccessControlPolicy", "Owner", "ID", "AccessControlList",
        "Grant", "Grantee", "Permission", "URI", "DisplayName", "Bucket", "Type"]
texts = st.one_of(
    st.sampled_from(["", "1", "0", "-1", "10001", "99999999999999999999", "true", "false",
                     "Enabled", "Suspended", '"etag"', "us-east-1", "EU", "FULL_CONTROL",
                     "a" * 2000, "&amp;", "&#0;", "&#x1F;", "]]>", "\u2603"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30),
)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;")


elements = st.recursive(
    texts.map(_escape),
    lambda children: st.builds(
        lambda tag, kids, ns: f"<{tag}{ns}>{''.join(kids)}</{tag}>",
        st.sampled_from(TAGS), st.lists(children, max_size=5),
        st.sampled_from(["", f' xmlns="{NS}"', ' xmlns="urn:x"'])),
    max_leaves=25,
)


def _entity_bomb(depth: int) -> str:
    decls = ['<!ENTITY e0 "lol">'] + [
        f'<!ENTITY e{i} "{f"&e{i - 1};" * 10}">' for i in range(1, depth)]
    doctype = f'<!DOCTYPE Tagging [{"".join(decls)}]>'
    return f'<?xml version="1.0"?>{doctype}<Tagging>&e{depth - 1};</Tagging>'


special_documents = st.sampled_from([
    _entity_bomb(9),
    '<?xml version="1.0"?><!DOCTYPE T [<!ENTITY x SYSTEM "file:///etc/passwd">]><Tagging>&x;</Tagging>',
    '<!DOCTYPE T [<!ENTITY % p SYSTEM "http://127.0.0.1:1/x"> %p;]><Tagging/>',
    '<?xml version="1.0"?><!DOCTYPE Delete [<!ELEMENT Delete ANY>]><Delete/>',
    "<Tagging>" * 50_000 + "</Tagging>" * 50_000,
    "<Delete>" + "<Object><Key>k</Key></Object>" * 2000 + "</Delete>",
    "<Tagging><TagSet>" + "<Tag><Key>k</Key><Value>v</Value></Tag>" * 60 + "</TagSet></Tagging>",
    "<" * 1000, "\x00\x01\x02", "<?xml version='1.0' encoding='UTF-7'?><Tagging/>",
    "<?xml version='1.0' encoding='ebcdic'?><Delete/>", "\ufeff<Delete/>",
    "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>x</ETag></Part>"
    "</CompleteMultipartUpload>",
])
bodies = st.one_of(
    elements.map(str.encode),
    special_documents.map(str.encode),
    st.binary(max_size=300),
    st.just(b"x" * (5 << 20)),  # over the 4 MiB limit of XML bodies
)

# A bucket of its own: a DeleteObjects or PutBucketVersioning the fuzzer makes valid
# changes it, never the objects the other properties read.
BUCKET = "fuzzxml"
OBJECT = "tagged"

# (method, path, query) of each operation whose body is an XML document.
OPERATIONS = [
    ("POST", f"/{BUCKET}", "delete"),
    ("PUT", f"/{BUCKET}", "tagging"),
    ("PUT", f"/{BUCKET}/{OBJECT}", "tagging"),
    ("PUT", f"/{BUCKET}", "versioning"),
    ("PUT", f"/{BUCKET}", "acl"),
    ("PUT", "/fuzz-new-bucket", ""),
    ("POST", f"/{BUCKET}/mpu-target", "uploadId=bogus"),
]


@pytest.fixture(scope="module", autouse=True)
def _xml_bucket(target: Target) -> None:
    for path, body in ((f"/{BUCKET}", b""), (f"/{BUCKET}/{OBJECT}", b"tag me")):
        answer = send(target.port, "PUT", path,
                      list(target.signer.headers("PUT", path).items()), body)
        assert answer.status == 200, answer


@given(op=st.sampled_from(OPERATIONS), body=bodies, md5=st.booleans())
@fuzz_settings(100)
def test_xml_bodies(target: Target, op: tuple[str, str, str], body: bytes, md5: bool) -> None:
    method, path, query = op
    full = path + (f"?{query}" if query else "")
    if "=" not in query and query:
        full = f"{path}?{query}="
    extra = {"Content-Type": "application/xml"}
    if md5:
        extra["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
    headers = target.signer.headers(method, full, extra)
    answer = send(target.port, method, full, list(headers.items()), body, timeout_s=30)
    assert_s3_answer(answer, method)
    if answer.status == 200 and path == "/fuzz-new-bucket":
        gone = target.signer.headers("DELETE", path)
        assert send(target.port, "DELETE", path, list(gone.items())).status == 204


@given(body=bodies, parts=st.lists(st.integers(-2, 10002), max_size=4))
@fuzz_settings(25)
def test_complete_multipart_upload_bodies(target: Target, body: bytes, parts: list[int]) -> None:
    key = "mpu-target"
    start = f"/{BUCKET}/{key}?uploads="
    created = send(target.port, "POST", start,
                   list(target.signer.headers("POST", start).items()))
    assert created.status == 200, created
    upload_id = created.body.split(b"<UploadId>")[1].split(b"</UploadId>")[0].decode()
    for number in parts:
        path = f"/{BUCKET}/{key}?partNumber={number}&uploadId={quote(upload_id, safe='')}"
        answer = send(target.port, "PUT", path,
                      list(target.signer.headers("PUT", path).items()), b"p" * 100)
        assert_s3_answer(answer, "PUT")
    path = f"/{BUCKET}/{key}?uploadId={quote(upload_id, safe='')}"
    answer = send(target.port, "POST", path, list(target.signer.headers("POST", path).items()),
                  body, timeout_s=30)
    assert_s3_answer(answer, "POST")
    send(target.port, "DELETE", path, list(target.signer.headers("DELETE", path).items()))


def test_server_still_serving_after_xml_fuzz(target: Target) -> None:
    target.assert_serving()
