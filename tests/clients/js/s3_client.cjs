// The AWS SDK for JavaScript v3 against a kurastore endpoint, as a Node user would
// drive it: PutObject, GetObject (whole and ranged), ListObjectsV2 with pages, and a
// lib-storage multipart Upload from a file stream; also CopyObject, DeleteObjects and
// the checksum the SDK sends by default. Prints one JSON document on stdout
// for tests/clients/test_js_sdk.py to check; any SDK error exits non-zero.
//
// Usage: node s3_client.cjs ENDPOINT BUCKET BIG_FILE
// Credentials and region come from the standard AWS_* environment variables.
"use strict";

const crypto = require("node:crypto");
const fs = require("node:fs");
const {
  S3Client,
  PutObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  CopyObjectCommand,
  DeleteObjectsCommand,
  ListObjectsV2Command,
  paginateListObjectsV2,
} = require("@aws-sdk/client-s3");
const { Upload } = require("@aws-sdk/lib-storage");

const PART_SIZE = 5 * 1024 * 1024;

function sha256(buf) {
  return crypto.createHash("sha256").update(buf).digest("hex");
}

async function main() {
  const [endpoint, bucket, bigFile] = process.argv.slice(2);
  const client = new S3Client({ endpoint, forcePathStyle: true, maxAttempts: 1 });
  const out = {
    version: require("@aws-sdk/client-s3/package.json").version,
    libStorageVersion: require("@aws-sdk/lib-storage/package.json").version,
  };

  const body = "hello from the AWS SDK for JavaScript v3\n";
  const put = await client.send(new PutObjectCommand({
    Bucket: bucket, Key: "js/hello.txt", Body: body,
    ContentType: "text/plain", Metadata: { origin: "node" },
  }));
  out.put = { etag: put.ETag };

  const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key: "js/hello.txt" }));
  out.get = {
    body: await got.Body.transformToString(),
    etag: got.ETag,
    contentType: got.ContentType,
    metadata: got.Metadata,
    contentLength: got.ContentLength,
  };
  const ranged = await client.send(new GetObjectCommand({
    Bucket: bucket, Key: "js/hello.txt", Range: "bytes=6-9",
  }));
  out.range = { body: await ranged.Body.transformToString(), contentRange: ranged.ContentRange };
  const head = await client.send(new HeadObjectCommand({
    Bucket: bucket, Key: "js/hello.txt", ChecksumMode: "ENABLED",
  }));
  out.checksum = { crc32: head.ChecksumCRC32, type: head.ChecksumType };
  const copied = await client.send(new CopyObjectCommand({
    Bucket: bucket, Key: "js/copy.txt", CopySource: `${bucket}/js/hello.txt`,
  }));
  out.copy = { etag: copied.CopyObjectResult.ETag };

  for (let i = 0; i < 7; i++) {
    await client.send(new PutObjectCommand({
      Bucket: bucket, Key: `js/many/k${i}`, Body: Buffer.alloc(i + 1, i),
    }));
  }
  const pages = [];
  const paginator = paginateListObjectsV2({ client, pageSize: 3 }, {
    Bucket: bucket, Prefix: "js/many/",
  });
  for await (const page of paginator) {
    pages.push((page.Contents || []).map((o) => ({ key: o.Key, size: o.Size, etag: o.ETag })));
  }
  out.listPages = pages;
  const delimited = await client.send(new ListObjectsV2Command({
    Bucket: bucket, Prefix: "js/", Delimiter: "/",
  }));
  out.delimited = {
    keys: (delimited.Contents || []).map((o) => o.Key),
    prefixes: (delimited.CommonPrefixes || []).map((p) => p.Prefix),
  };
  // Recent SDKs send a CRC32 instead of Content-MD5 with DeleteObjects.
  const deleted = await client.send(new DeleteObjectsCommand({
    Bucket: bucket, Delete: { Objects: [{ Key: "js/many/k0" }, { Key: "js/many/k1" }] },
  }));
  out.deleted = (deleted.Deleted || []).map((d) => d.Key).sort();
  out.deleteErrors = deleted.Errors || [];

  const upload = new Upload({
    client,
    params: { Bucket: bucket, Key: "js/big.bin", Body: fs.createReadStream(bigFile) },
    partSize: PART_SIZE,
    queueSize: 4,
  });
  const parts = [];
  upload.on("httpUploadProgress", (p) => { if (p.part) parts.push(p.part); });
  const done = await upload.done();
  const bigHead = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: "js/big.bin" }));
  const big = await client.send(new GetObjectCommand({ Bucket: bucket, Key: "js/big.bin" }));
  out.upload = {
    etag: done.ETag,
    parts: [...new Set(parts)].length,
    headLength: bigHead.ContentLength,
    headEtag: bigHead.ETag,
    sha256: sha256(Buffer.from(await big.Body.transformToByteArray())),
  };
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((err) => {
  const meta = err.$metadata || {};
  process.stderr.write(`${err.name}: ${err.message} (HTTP ${meta.httpStatusCode})\n`);
  process.exit(1);
});
