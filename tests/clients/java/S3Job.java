// The AWS SDK for Java v2 against a kurastore endpoint, configured as Hadoop 3.4's
// S3A configures it (path style, a fixed region, static keys) and otherwise left
// at its defaults, so uploads carry CRC32 trailers in aws-chunked bodies and
// downloads ask for checksums to validate. Runs in single-file source mode:
//   java -cp CLASSPATH S3Job.java ENDPOINT BUCKET BIGFILE
// and prints one line "key=value" per fact it saw; the Python test checks them.

import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;

import software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider;
import software.amazon.awssdk.core.ResponseBytes;
import software.amazon.awssdk.core.async.AsyncRequestBody;
import software.amazon.awssdk.core.sync.RequestBody;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.s3.S3AsyncClient;
import software.amazon.awssdk.services.s3.S3Client;
import software.amazon.awssdk.services.s3.model.*;

public class S3Job {
    static void fact(String key, Object value) {
        System.out.println(key + "=" + value);
    }

    static String md5(byte[] data) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("MD5").digest(data));
    }

    public static void main(String[] args) throws Exception {
        URI endpoint = URI.create(args[0]);
        String bucket = args[1];
        Path bigPath = Path.of(args[2]);
        var creds = EnvironmentVariableCredentialsProvider.create();
        Region region = Region.of(System.getenv("AWS_REGION"));

        try (S3Client s3 = S3Client.builder().endpointOverride(endpoint).region(region)
                .credentialsProvider(creds).forcePathStyle(true).build()) {
            byte[] small = "hello from the Java SDK\n".getBytes(StandardCharsets.UTF_8);
            PutObjectResponse put = s3.putObject(PutObjectRequest.builder().bucket(bucket)
                    .key("small.txt").contentType("text/plain").metadata(Map.of("origin", "java"))
                    .build(), RequestBody.fromBytes(small));
            fact("put_etag", put.eTag());
            fact("put_crc32", put.checksumCRC32());
            fact("put_checksum_type", put.checksumTypeAsString());
            // Another algorithm, chosen by the caller; the GET validates it.
            PutObjectResponse c32c = s3.putObject(PutObjectRequest.builder().bucket(bucket)
                    .key("dir/crc32c.txt").checksumAlgorithm(ChecksumAlgorithm.CRC32_C).build(),
                    RequestBody.fromBytes(small));
            ResponseBytes<GetObjectResponse> c32cBack = s3.getObjectAsBytes(GetObjectRequest
                    .builder().bucket(bucket).key("dir/crc32c.txt")
                    .checksumMode(ChecksumMode.ENABLED).build());
            fact("crc32c_equal", c32c.checksumCRC32C() != null
                    && c32c.checksumCRC32C().equals(c32cBack.response().checksumCRC32C()));

            ResponseBytes<GetObjectResponse> got = s3.getObjectAsBytes(GetObjectRequest.builder()
                    .bucket(bucket).key("small.txt").checksumMode(ChecksumMode.ENABLED).build());
            fact("get_equal", java.util.Arrays.equals(got.asByteArray(), small));
            fact("get_crc32", got.response().checksumCRC32());

            HeadObjectResponse head = s3.headObject(HeadObjectRequest.builder().bucket(bucket)
                    .key("small.txt").build());
            fact("head_size", head.contentLength());
            fact("head_type", head.contentType());
            fact("head_meta", head.metadata().get("origin"));

            // A multipart upload by hand, as S3A's block output stream does it.
            byte[] big = Files.readAllBytes(bigPath);
            String uploadId = s3.createMultipartUpload(CreateMultipartUploadRequest.builder()
                    .bucket(bucket).key("dir/manual.bin").build()).uploadId();
            int partSize = 5 << 20;
            List<CompletedPart> parts = new ArrayList<>();
            for (int off = 0, n = 1; off < big.length; off += partSize, n++) {
                int len = Math.min(partSize, big.length - off);
                UploadPartResponse part = s3.uploadPart(UploadPartRequest.builder().bucket(bucket)
                        .key("dir/manual.bin").uploadId(uploadId).partNumber(n).build(),
                        RequestBody.fromBytes(java.util.Arrays.copyOfRange(big, off, off + len)));
                parts.add(CompletedPart.builder().partNumber(n).eTag(part.eTag())
                        .checksumCRC32(part.checksumCRC32()).build());
            }
            CompleteMultipartUploadResponse done = s3.completeMultipartUpload(
                    CompleteMultipartUploadRequest.builder().bucket(bucket).key("dir/manual.bin")
                            .uploadId(uploadId)
                            .multipartUpload(CompletedMultipartUpload.builder().parts(parts).build())
                            .build());
            fact("manual_etag", done.eTag());
            fact("manual_parts", parts.size());
            // The SDK sends each requested attribute as its own header line.
            GetObjectAttributesResponse attrs = s3.getObjectAttributes(
                    GetObjectAttributesRequest.builder().bucket(bucket).key("dir/manual.bin")
                            .objectAttributes(ObjectAttributes.E_TAG, ObjectAttributes.OBJECT_SIZE,
                                    ObjectAttributes.OBJECT_PARTS).build());
            fact("attrs", attrs.eTag() + "," + attrs.objectSize() + ","
                    + (attrs.objectParts() == null ? null : attrs.objectParts().totalPartsCount()));

            // The async client's own multipart upload (the Java-based one, no CRT).
            try (S3AsyncClient async = S3AsyncClient.builder().endpointOverride(endpoint)
                    .region(region).credentialsProvider(creds).forcePathStyle(true)
                    .multipartEnabled(true)
                    .multipartConfiguration(c -> c.minimumPartSizeInBytes(5L << 20)
                            .thresholdInBytes(8L << 20))
                    .build()) {
                PutObjectResponse auto = async.putObject(PutObjectRequest.builder().bucket(bucket)
                        .key("dir/auto.bin").build(), AsyncRequestBody.fromFile(bigPath)).join();
                fact("auto_etag", auto.eTag());
                ResponseBytes<GetObjectResponse> back = async.getObject(GetObjectRequest.builder()
                        .bucket(bucket).key("dir/auto.bin").build(),
                        software.amazon.awssdk.core.async.AsyncResponseTransformer.toBytes()).join();
                fact("auto_md5", md5(back.asByteArray()));
            }

            ResponseBytes<GetObjectResponse> range = s3.getObjectAsBytes(GetObjectRequest.builder()
                    .bucket(bucket).key("dir/manual.bin").range("bytes=100-199").build());
            fact("range_md5", md5(range.asByteArray()));
            fact("manual_md5", md5(s3.getObjectAsBytes(GetObjectRequest.builder().bucket(bucket)
                    .key("dir/manual.bin").build()).asByteArray()));

            s3.copyObject(CopyObjectRequest.builder().sourceBucket(bucket).sourceKey("small.txt")
                    .destinationBucket(bucket).destinationKey("dir/copy.txt").build());

            List<String> keys = new ArrayList<>();
            s3.listObjectsV2Paginator(ListObjectsV2Request.builder().bucket(bucket).maxKeys(2)
                    .build()).contents().forEach(o -> keys.add(o.key()));
            fact("keys", String.join(",", keys));
            List<String> prefixes = new ArrayList<>();
            s3.listObjectsV2(ListObjectsV2Request.builder().bucket(bucket).delimiter("/").build())
                    .commonPrefixes().forEach(p -> prefixes.add(p.prefix()));
            fact("prefixes", String.join(",", prefixes));

            s3.deleteObject(DeleteObjectRequest.builder().bucket(bucket).key("small.txt").build());
            DeleteObjectsResponse del = s3.deleteObjects(DeleteObjectsRequest.builder()
                    .bucket(bucket).delete(Delete.builder().objects(
                            ObjectIdentifier.builder().key("dir/copy.txt").build(),
                            ObjectIdentifier.builder().key("dir/crc32c.txt").build(),
                            ObjectIdentifier.builder().key("dir/manual.bin").build(),
                            ObjectIdentifier.builder().key("dir/auto.bin").build()).build())
                    .build());
            fact("deleted", del.deleted().size());
            try {
                s3.headObject(HeadObjectRequest.builder().bucket(bucket).key("small.txt").build());
                fact("head_after_delete", "found");
            } catch (NoSuchKeyException e) {
                fact("head_after_delete", e.statusCode());
            }
        }
    }
}
