"""boto3 against a real kurastore server: the bucket features kurastore does not offer
(acceleration, notifications, replication, website hosting, analytics, metrics,
inventory, Intelligent-Tiering) read as AWS reads them on a bucket that never set them,
so tools that read every setting (Terraform, s3cmd `info`) keep working; setting them
is NotImplemented, and nothing is answered to a user who may not read the bucket."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from support.s3client import error_code

pytestmark = pytest.mark.clients


def _status(err: pytest.ExceptionInfo[ClientError]) -> int:
    return err.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_unset_configurations_read_as_absent(s3, bucket: str) -> None:
    accelerate = s3.get_bucket_accelerate_configuration(Bucket=bucket)
    assert "Status" not in accelerate
    notification = s3.get_bucket_notification_configuration(Bucket=bucket)
    assert not {"TopicConfigurations", "QueueConfigurations",
                "LambdaFunctionConfigurations", "EventBridgeConfiguration"} & set(notification)
    for call, code in (
        (s3.get_bucket_website, "NoSuchWebsiteConfiguration"),
        (s3.get_bucket_replication, "ReplicationConfigurationNotFoundError"),
    ):
        with pytest.raises(ClientError) as err:
            call(Bucket=bucket)
        assert error_code(err.value) == code and _status(err) == 404


@pytest.mark.parametrize("kind, items", [
    ("analytics", "AnalyticsConfigurationList"),
    ("metrics", "MetricsConfigurationList"),
    ("inventory", "InventoryConfigurationList"),
    ("intelligent_tiering", "IntelligentTieringConfigurationList"),
])
def test_configuration_lists_are_empty_and_ids_unknown(s3, bucket: str, kind: str,
                                                       items: str) -> None:
    listed = getattr(s3, f"list_bucket_{kind}_configurations")(Bucket=bucket)
    assert listed["IsTruncated"] is False and not listed.get(items)
    for verb in ("get", "delete"):
        with pytest.raises(ClientError) as err:
            getattr(s3, f"{verb}_bucket_{kind}_configuration")(Bucket=bucket, Id="daily")
        assert error_code(err.value) == "NoSuchConfiguration" and _status(err) == 404


def test_clearing_is_accepted_and_setting_is_not_implemented(s3, bucket: str) -> None:
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={})
    s3.delete_bucket_website(Bucket=bucket)
    s3.delete_bucket_replication(Bucket=bucket)
    queue = {"QueueConfigurations": [{"QueueArn": "arn:aws:sqs:us-east-1:1:q",
                                      "Events": ["s3:ObjectCreated:*"]}]}
    for call in (
        lambda: s3.put_bucket_notification_configuration(Bucket=bucket,
                                                         NotificationConfiguration=queue),
        lambda: s3.put_bucket_accelerate_configuration(
            Bucket=bucket, AccelerateConfiguration={"Status": "Enabled"}),
        lambda: s3.put_bucket_metrics_configuration(
            Bucket=bucket, Id="all", MetricsConfiguration={"Id": "all"}),
    ):
        with pytest.raises(ClientError) as err:
            call()
        assert error_code(err.value) == "NotImplemented" and _status(err) == 501
    assert s3.get_bucket_notification_configuration(Bucket=bucket).get(
        "QueueConfigurations") is None


def test_another_users_bucket_is_access_denied(s3, bucket: str, other: dict) -> None:
    client = other["client"]
    for call in (client.get_bucket_accelerate_configuration,
                 client.get_bucket_notification_configuration,
                 client.get_bucket_website, client.list_bucket_metrics_configurations):
        with pytest.raises(ClientError) as err:
            call(Bucket=bucket)
        assert error_code(err.value) == "AccessDenied"
    with pytest.raises(ClientError) as err:
        client.put_bucket_notification_configuration(Bucket=bucket,
                                                     NotificationConfiguration={})
    assert error_code(err.value) == "AccessDenied"


def test_missing_bucket_is_no_such_bucket(s3) -> None:
    with pytest.raises(ClientError) as err:
        s3.get_bucket_accelerate_configuration(Bucket="no-such-bucket-unconfigured")
    assert error_code(err.value) == "NoSuchBucket"
