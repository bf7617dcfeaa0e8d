"""S3 bucket configuration handlers: CORS (Put/Get/DeleteBucketCors), lifecycle
(Put/Get/DeleteBucketLifecycleConfiguration), default encryption
(Put/Get/DeleteBucketEncryption) and server access logging (Put/GetBucketLogging).

Each configuration is parsed and validated by its own module (cors.py,
lifecycle.py, bucket_encryption.py, bucket_logging.py) and kept as a whole in the bucket's
settings under its key; a Put replaces it, a Delete removes it (204 even when none was set),
a Get of none answers the configuration's own 404 error. Logging has no Delete and no 404:
an empty BucketLoggingStatus turns it off, and a Get of none answers that empty status.
"""

from __future__ import annotations

from aiohttp import web

from kurastore.gateway.objects import lifecycle as rules
from kurastore.gateway.s3 import bucket_encryption, bucket_logging, cors, handlers_access, lifecycle
from kurastore.gateway.s3 import errors as s3e
from kurastore.gateway.s3 import headers as hdr
from kurastore.gateway.s3.context import Handler, S3Request, empty_response, xml_response
from kurastore.gateway.s3.routes import S3Op
from kurastore.metadata import BucketNotFound


def _settings(s3: S3Request) -> dict:
    return dict(s3.bucket_record.settings) if s3.bucket_record else {}


async def _body(s3: S3Request) -> bytes:
    spec = hdr.integrity_spec(s3.headers)
    body = await s3.read_xml_body()
    hdr.check_small_body(spec, body)
    return body


async def _store(s3: S3Request, key: str, value: object) -> None:
    settings = _settings(s3)
    if value is None:
        settings.pop(key, None)
    else:
        settings[key] = value
    await s3.service.update_bucket(s3.bucket, settings=settings)


# --- CORS -------------------------------------------------------------------------------


async def put_bucket_cors(s3: S3Request) -> web.StreamResponse:
    await _store(s3, cors.SETTINGS_KEY, cors.parse_config(await _body(s3)))
    return empty_response()


async def get_bucket_cors(s3: S3Request) -> web.StreamResponse:
    found = cors.rules_of(_settings(s3))
    if not found:
        raise s3e.NoSuchCORSConfiguration(BucketName=s3.bucket)
    return xml_response(cors.render_config(found))


async def delete_bucket_cors(s3: S3Request) -> web.StreamResponse:
    await _store(s3, cors.SETTINGS_KEY, None)
    return empty_response(204)


# --- lifecycle ----------------------------------------------------------------------------


async def put_bucket_lifecycle(s3: S3Request) -> web.StreamResponse:
    await _store(s3, rules.SETTINGS_KEY, lifecycle.parse_config(await _body(s3)))
    return empty_response()


async def get_bucket_lifecycle(s3: S3Request) -> web.StreamResponse:
    found = rules.rules_of(_settings(s3))
    if not found:
        raise s3e.NoSuchLifecycleConfiguration(BucketName=s3.bucket)
    return xml_response(lifecycle.render_config(found))


async def delete_bucket_lifecycle(s3: S3Request) -> web.StreamResponse:
    await _store(s3, rules.SETTINGS_KEY, None)
    return empty_response(204)


# --- default encryption -------------------------------------------------------------------


async def put_bucket_encryption(s3: S3Request) -> web.StreamResponse:
    config = bucket_encryption.parse_config(await _body(s3))
    await _store(s3, bucket_encryption.SETTINGS_KEY, config)
    return empty_response()


async def get_bucket_encryption(s3: S3Request) -> web.StreamResponse:
    found = bucket_encryption.default_encryption(_settings(s3))
    if found is None:
        raise s3e.ServerSideEncryptionConfigurationNotFoundError(BucketName=s3.bucket)
    return xml_response(bucket_encryption.render_config(found))


async def delete_bucket_encryption(s3: S3Request) -> web.StreamResponse:
    await _store(s3, bucket_encryption.SETTINGS_KEY, None)
    return empty_response(204)


# --- server access logging ---------------------------------------------------------------


async def put_bucket_logging(s3: S3Request) -> web.StreamResponse:
    record = s3.bucket_record
    if record is None or s3.user_id != record.owner:  # AWS: the bucket owner only
        raise s3e.AccessDenied()
    config = await bucket_logging.parse_config(await _body(s3), handlers_access.resolver(s3))
    if config is not None:
        name = config["target_bucket"]
        try:
            target = await s3.service.get_bucket(name, fresh=True)
        except BucketNotFound:
            raise bucket_logging.InvalidTargetBucketForLogging(
                "The target bucket for logging does not exist", TargetBucket=name
            ) from None
        bucket_logging.check_target(record, target, config)
    await _store(s3, bucket_logging.SETTINGS_KEY, config)
    return empty_response()


async def get_bucket_logging(s3: S3Request) -> web.StreamResponse:
    config = bucket_logging.config_of(_settings(s3))
    names = {}
    if config is not None:
        for grant in bucket_logging.grants_of(config):
            if grant.user_id:
                names[grant.user_id] = await s3.display_name(grant.user_id)
    return xml_response(bucket_logging.render_config(config, names))


HANDLERS: dict[S3Op, Handler] = {
    S3Op.PUT_BUCKET_CORS: put_bucket_cors,
    S3Op.GET_BUCKET_CORS: get_bucket_cors,
    S3Op.DELETE_BUCKET_CORS: delete_bucket_cors,
    S3Op.PUT_BUCKET_LIFECYCLE: put_bucket_lifecycle,
    S3Op.GET_BUCKET_LIFECYCLE: get_bucket_lifecycle,
    S3Op.DELETE_BUCKET_LIFECYCLE: delete_bucket_lifecycle,
    S3Op.PUT_BUCKET_ENCRYPTION: put_bucket_encryption,
    S3Op.GET_BUCKET_ENCRYPTION: get_bucket_encryption,
    S3Op.DELETE_BUCKET_ENCRYPTION: delete_bucket_encryption,
    S3Op.PUT_BUCKET_LOGGING: put_bucket_logging,
    S3Op.GET_BUCKET_LOGGING: get_bucket_logging,
}
