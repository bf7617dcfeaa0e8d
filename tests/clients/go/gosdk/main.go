// The AWS SDK for Go v2 against a kurastore endpoint, the way a service uses it:
// default checksum settings (CRC32 trailers on uploads, response validation on
// downloads), PutObject, GetObject, HeadObject, ListObjectsV2, a multipart upload
// through the transfer manager (and its part-number and ranged downloads),
// GetObjectAttributes, CopyObject, DeleteObjects. Prints one JSON document
// of what it saw; the Python test checks it and cross-checks with boto3.
package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager"
	tmtypes "github.com/aws/aws-sdk-go-v2/feature/s3/transfermanager/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func must(err error, what string) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		os.Exit(1)
	}
}

func md5hex(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: gosdk ENDPOINT BUCKET BIGFILE")
		os.Exit(2)
	}
	endpoint, bucket, bigPath := os.Args[1], os.Args[2], os.Args[3]
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	must(err, "config")
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.BaseEndpoint = aws.String(endpoint)
		o.UsePathStyle = true
	})
	out := map[string]any{}

	small := []byte("hello from the Go SDK\n")
	put, err := client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String("small.txt"), Body: bytes.NewReader(small),
		ContentType: aws.String("text/plain"), Metadata: map[string]string{"origin": "go"},
	})
	must(err, "PutObject")
	out["put_etag"] = aws.ToString(put.ETag)
	out["put_crc32"] = aws.ToString(put.ChecksumCRC32)
	out["put_checksum_type"] = string(put.ChecksumType)

	got, err := client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(bucket), Key: aws.String("small.txt"),
		ChecksumMode: types.ChecksumModeEnabled,
	})
	must(err, "GetObject")
	body, err := io.ReadAll(got.Body)
	must(err, "GetObject body")
	out["get_equal"] = bytes.Equal(body, small)
	out["get_crc32"] = aws.ToString(got.ChecksumCRC32)

	head, err := client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket: aws.String(bucket), Key: aws.String("small.txt"),
	})
	must(err, "HeadObject")
	out["head"] = map[string]any{
		"size": aws.ToInt64(head.ContentLength), "type": aws.ToString(head.ContentType),
		"meta": head.Metadata, "etag": aws.ToString(head.ETag),
	}

	big, err := os.ReadFile(bigPath)
	must(err, "read big file")
	// The transfer manager uploads in parts and downloads by part number (GetObject
	// ?partNumber=N), each part's CRC32 checked against the one the store returns.
	tm := transfermanager.New(client, func(o *transfermanager.Options) {
		o.PartSizeBytes = 5 << 20
		o.Concurrency = 3
	})
	up, err := tm.UploadObject(ctx, &transfermanager.UploadObjectInput{
		Bucket: aws.String(bucket), Key: aws.String("dir/big.bin"), Body: bytes.NewReader(big),
	})
	must(err, "UploadObject (multipart)")
	out["multipart_etag"] = aws.ToString(up.ETag)
	out["multipart_crc32"] = aws.ToString(up.ChecksumCRC32)
	// The SDK sends each requested attribute as its own header line.
	attrs, err := client.GetObjectAttributes(ctx, &s3.GetObjectAttributesInput{
		Bucket: aws.String(bucket), Key: aws.String("dir/big.bin"),
		ObjectAttributes: []types.ObjectAttributes{types.ObjectAttributesEtag,
			types.ObjectAttributesChecksum, types.ObjectAttributesObjectParts,
			types.ObjectAttributesObjectSize},
	})
	must(err, "GetObjectAttributes")
	attrOut := map[string]any{"etag": aws.ToString(attrs.ETag), "size": aws.ToInt64(attrs.ObjectSize)}
	if attrs.ObjectParts != nil {
		attrOut["parts"] = aws.ToInt32(attrs.ObjectParts.TotalPartsCount)
	}
	if attrs.Checksum != nil {
		attrOut["crc32"] = aws.ToString(attrs.Checksum.ChecksumCRC32)
		attrOut["checksum_type"] = string(attrs.Checksum.ChecksumType)
	}
	out["attributes"] = attrOut
	down, err := tm.GetObject(ctx, &transfermanager.GetObjectInput{
		Bucket: aws.String(bucket), Key: aws.String("dir/big.bin"),
	})
	must(err, "GetObject (parts)")
	back, err := io.ReadAll(down.Body)
	must(err, "GetObject (parts) body")
	out["download_size"] = len(back)
	out["download_md5"] = md5hex(back)
	ranged := transfermanager.New(client, func(o *transfermanager.Options) {
		o.PartSizeBytes = 4 << 20
		o.GetObjectType = tmtypes.GetObjectRanges
	})
	down, err = ranged.GetObject(ctx, &transfermanager.GetObjectInput{
		Bucket: aws.String(bucket), Key: aws.String("dir/big.bin"),
	})
	must(err, "GetObject (ranges)")
	back, err = io.ReadAll(down.Body)
	must(err, "GetObject (ranges) body")
	out["ranges_md5"] = md5hex(back)

	_, err = client.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket: aws.String(bucket), Key: aws.String("dir/copy.txt"),
		CopySource: aws.String(bucket + "/small.txt"),
	})
	must(err, "CopyObject")

	var keys []string
	pages := s3.NewListObjectsV2Paginator(client, &s3.ListObjectsV2Input{
		Bucket: aws.String(bucket), MaxKeys: aws.Int32(2),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		must(err, "ListObjectsV2")
		for _, obj := range page.Contents {
			keys = append(keys, aws.ToString(obj.Key))
		}
	}
	out["keys"] = keys
	delim, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
		Bucket: aws.String(bucket), Delimiter: aws.String("/"),
	})
	must(err, "ListObjectsV2 delimiter")
	var prefixes []string
	for _, p := range delim.CommonPrefixes {
		prefixes = append(prefixes, aws.ToString(p.Prefix))
	}
	out["prefixes"] = prefixes

	_, err = client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("small.txt")})
	must(err, "DeleteObject")
	// DeleteObjects needs a checksum of its body: the SDK sends CRC32 by default.
	del, err := client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
		Bucket: aws.String(bucket),
		Delete: &types.Delete{Objects: []types.ObjectIdentifier{
			{Key: aws.String("dir/copy.txt")}, {Key: aws.String("dir/big.bin")},
		}},
	})
	must(err, "DeleteObjects")
	out["deleted"] = len(del.Deleted)
	_, err = client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("small.txt")})
	out["head_after_delete"] = fmt.Sprint(err != nil)

	enc := json.NewEncoder(os.Stdout)
	must(enc.Encode(out), "encode")
}
