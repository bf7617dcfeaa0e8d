"""THE S3 error table: every S3 error code we answer, and the one mapping from
domain errors (object service, metadata) to them.

An S3Error carries code, HTTP status and message; the error middleware renders
it as S3's XML error document. Any exception not in the table becomes
InternalError (500) and is logged with the request id.
"""

from __future__ import annotations

from typing import ClassVar

from kurastore.gateway.objects import errors as dom


class S3Error(Exception):
    code: ClassVar[str] = "InternalError"
    status: ClassVar[int] = 500
    message: ClassVar[str] = "We encountered an internal error. Please try again."

    def __init__(self, message: str | None = None, **fields: str) -> None:
        super().__init__(message or self.message)
        # Extra elements of the XML error document (BucketName, Key, ...) and, for
        # names starting with "header:", response headers.
        self.fields = fields

    @property
    def text(self) -> str:
        return str(self.args[0]) if self.args else self.message


def _error(name: str, status: int, message: str) -> type[S3Error]:
    return type(name, (S3Error,), {"code": name, "status": status, "message": message})


AccessDenied = _error("AccessDenied", 403, "Access Denied")
ObjectLocked = _error("AccessDenied", 403,
                      "Access Denied because object protected by object lock.")
InvalidBucketAclWithObjectOwnership = _error(
    "InvalidBucketAclWithObjectOwnership", 400,
    "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting",
)
MalformedACLError = _error(
    "MalformedACLError", 400,
    "The XML you provided was not well-formed or did not validate against our published schema",
)
OwnershipControlsNotFoundError = _error(
    "OwnershipControlsNotFoundError", 404, "The bucket ownership controls were not found"
)
UnresolvableGrantByEmailAddress = _error(
    "UnresolvableGrantByEmailAddress", 400,
    "The e-mail address you provided does not match any account on record.",
)
AccessControlListNotSupported = _error(
    "AccessControlListNotSupported", 400, "The bucket does not allow ACLs"
)
AccessForbidden = _error("AccessForbidden", 403, "CORSResponse: This CORS request is not allowed.")
BadRequest = _error("BadRequest", 400, "Bad Request")
AccountProblem = _error("AccountProblem", 403, "There is a problem with your account.")
AuthorizationHeaderMalformed = _error(
    "AuthorizationHeaderMalformed", 400, "The authorization header is malformed."
)
AuthorizationQueryParametersError = _error(
    "AuthorizationQueryParametersError", 400, "Error parsing the X-Amz-Credential parameter."
)
BadDigest = _error("BadDigest", 400, "The Content-MD5 you specified did not match what we received.")
BucketAlreadyExists = _error(
    "BucketAlreadyExists",
    409,
    "The requested bucket name is not available. Please select a different name and try again.",
)
BucketAlreadyOwnedByYou = _error(
    "BucketAlreadyOwnedByYou",
    409,
    "Your previous request to create the named bucket succeeded and you already own it.",
)
BucketNotEmpty = _error("BucketNotEmpty", 409, "The bucket you tried to delete is not empty.")
EntityTooLarge = _error(
    "EntityTooLarge", 400, "Your proposed upload exceeds the maximum allowed object size."
)
EntityTooSmall = _error(
    "EntityTooSmall", 400, "Your proposed upload is smaller than the minimum allowed object size."
)
ExpiredToken = _error("ExpiredToken", 400, "The provided token has expired.")
IncompleteBody = _error(
    "IncompleteBody", 400, "You did not provide the number of bytes specified by the Content-Length HTTP header."
)
IncorrectNumberOfFilesInPostRequest = _error(
    "IncorrectNumberOfFilesInPostRequest", 400,
    "POST requires exactly one file upload per request.",
)
InternalError = _error("InternalError", 500, "We encountered an internal error. Please try again.")
InvalidAccessKeyId = _error(
    "InvalidAccessKeyId", 403, "The AWS Access Key Id you provided does not exist in our records."
)
InvalidArgument = _error("InvalidArgument", 400, "Invalid Argument")
InvalidBucketName = _error("InvalidBucketName", 400, "The specified bucket is not valid.")
InvalidBucketState = _error("InvalidBucketState", 409, "The request is not valid with the current state of the bucket.")
InvalidDigest = _error("InvalidDigest", 400, "The Content-MD5 you specified is not valid.")
InvalidEncryptionAlgorithmError = _error(
    "InvalidEncryptionAlgorithmError", 400, "The encryption request you specified is not valid."
)
InvalidLocationConstraint = _error(
    "InvalidLocationConstraint", 400, "The specified location constraint is not valid."
)
InvalidObjectState = _error("InvalidObjectState", 403, "The operation is not valid for the current state of the object.")
InvalidPart = _error(
    "InvalidPart",
    400,
    "One or more of the specified parts could not be found. The part may not have been "
    "uploaded, or the specified entity tag may not match the part's entity tag.",
)
InvalidPartOrder = _error(
    "InvalidPartOrder", 400, "The list of parts was not in ascending order. The parts list must be specified in order by part number."
)
InvalidPolicyDocument = _error(
    "InvalidPolicyDocument", 400,
    "The content of the form does not meet the conditions specified in the policy document.",
)
InvalidRange = _error("InvalidRange", 416, "The requested range is not satisfiable")
InvalidPartNumber = _error("InvalidPartNumber", 416, "The requested partnumber is not satisfiable")
InvalidRetentionPeriod = _error(
    "InvalidRetentionPeriod", 400, "Default retention period must be a positive integer value."
)
InvalidRequest = _error("InvalidRequest", 400, "Invalid Request")
InvalidStorageClass = _error("InvalidStorageClass", 400, "The storage class you specified is not valid")
InvalidTag = _error("InvalidTag", 400, "The tag provided was not a valid tag.")
InvalidURI = _error("InvalidURI", 400, "Couldn't parse the specified URI.")
KeyTooLongError = _error("KeyTooLongError", 400, "Your key is too long")
MalformedPOSTRequest = _error(
    "MalformedPOSTRequest", 400,
    "The body of your POST request is not well-formed multipart/form-data.",
)
MalformedXML = _error(
    "MalformedXML", 400, "The XML you provided was not well-formed or did not validate against our published schema"
)
MaxMessageLengthExceeded = _error("MaxMessageLengthExceeded", 400, "Your request was too big.")
MetadataTooLarge = _error(
    "MetadataTooLarge", 400, "Your metadata headers exceed the maximum allowed metadata size."
)
MethodNotAllowed = _error("MethodNotAllowed", 405, "The specified method is not allowed against this resource.")
MissingContentLength = _error("MissingContentLength", 411, "You must provide the Content-Length HTTP header.")
MissingSecurityHeader = _error("MissingSecurityHeader", 400, "Your request is missing a required header.")
NoSuchBucket = _error("NoSuchBucket", 404, "The specified bucket does not exist")
NoSuchBucketPolicy = _error("NoSuchBucketPolicy", 404, "The bucket policy does not exist")
NoSuchCORSConfiguration = _error("NoSuchCORSConfiguration", 404, "The CORS configuration does not exist")
NoSuchKey = _error("NoSuchKey", 404, "The specified key does not exist.")
ObjectLockConfigurationNotFoundError = _error(
    "ObjectLockConfigurationNotFoundError", 404,
    "Object Lock configuration does not exist for this bucket",
)
NoSuchObjectLockConfiguration = _error(
    "NoSuchObjectLockConfiguration", 404, "The specified object does not have a ObjectLock configuration"
)
NoSuchLifecycleConfiguration = _error(
    "NoSuchLifecycleConfiguration", 404, "The lifecycle configuration does not exist"
)
NoSuchTagSet = _error("NoSuchTagSet", 404, "The TagSet does not exist")
NoSuchWebsiteConfiguration = _error(
    "NoSuchWebsiteConfiguration", 404, "The specified bucket does not have a website configuration"
)
NoSuchConfiguration = _error("NoSuchConfiguration", 404, "The specified configuration does not exist.")
ReplicationConfigurationNotFoundError = _error(
    "ReplicationConfigurationNotFoundError", 404, "The replication configuration was not found"
)
NoSuchUpload = _error(
    "NoSuchUpload",
    404,
    "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
)
NoSuchVersion = _error(
    "NoSuchVersion", 404, "The specified version does not exist."
)
NotImplemented_ = type(
    "NotImplemented",
    (S3Error,),
    {"code": "NotImplemented", "status": 501, "message": "A header you provided implies functionality that is not implemented"},
)
NotModified = _error("NotModified", 304, "Not Modified")
PreconditionFailed = _error("PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold")
RequestTimeTooSkewed = _error(
    "RequestTimeTooSkewed", 403, "The difference between the request time and the current time is too large."
)
RequestTimeout = _error(
    "RequestTimeout", 400, "Your socket connection to the server was not read from or written to within the timeout period."
)
ServerSideEncryptionConfigurationNotFoundError = _error(
    "ServerSideEncryptionConfigurationNotFoundError", 404,
    "The server side encryption configuration was not found",
)
ServiceUnavailable = _error("ServiceUnavailable", 503, "Please reduce your request rate.")
# Same codes as AWS, with messages that say what is wrong (the details are logged).
StorageUnavailable = _error(
    "ServiceUnavailable", 503,
    "Too few storage pods are reachable to complete the request. Please try again.",
)
MetadataUnavailable = _error(
    "ServiceUnavailable", 503,
    "The metadata store is unavailable or busy. Please try again.",
)
DataUnreadable = _error(
    "InternalError", 500,
    "Too few of the object's shards are reachable and intact to read it. Please try again.",
)
SignatureDoesNotMatch = _error(
    "SignatureDoesNotMatch",
    403,
    "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
)
SlowDown = _error("SlowDown", 503, "Please reduce your request rate.")
TooManyParts = _error("TooManyParts", 400, "You have attempted to create more parts than allowed.")
UnexpectedContent = _error("UnexpectedContent", 400, "This request does not support content")
XAmzContentSHA256Mismatch = _error(
    "XAmzContentSHA256Mismatch", 400, "The provided 'x-amz-content-sha256' header does not match what was computed."
)
ConditionalRequestConflict = _error(
    "ConditionalRequestConflict", 409, "A conflicting operation occurred. If using PutObject you can retry the request."
)

# Domain error -> S3 error. Looked up along the exception's MRO.
DOMAIN_TO_S3: dict[type[BaseException], type[S3Error]] = {
    dom.BucketNotFound: NoSuchBucket,
    dom.BucketAlreadyExists: BucketAlreadyExists,
    dom.BucketAlreadyOwnedByYou: BucketAlreadyOwnedByYou,
    dom.BucketNotEmpty: BucketNotEmpty,
    dom.ObjectNotFound: NoSuchKey,
    dom.VersionNotFound: NoSuchVersion,
    dom.UploadNotFound: NoSuchUpload,
    dom.PreconditionFailed: PreconditionFailed,
    dom.VersionProtected: ObjectLocked,
    dom.ConditionalConflict: ConditionalRequestConflict,
    dom.AccessKeyNotFound: InvalidAccessKeyId,
    dom.MetadataUnavailable: MetadataUnavailable,
    dom.InvalidPartNumber: InvalidPartNumber,
    dom.InvalidRange: InvalidRange,
    dom.NotModified: NotModified,
    dom.InvalidPart: InvalidPart,
    dom.InvalidPartOrder: InvalidPartOrder,
    dom.EntityTooSmall: EntityTooSmall,
    dom.EntityTooLarge: EntityTooLarge,
    dom.IncompleteBody: IncompleteBody,
    dom.InvalidArgument: InvalidArgument,
    dom.KeyRequired: InvalidRequest,
    dom.QuorumNotReached: StorageUnavailable,
    dom.DataUnavailable: StorageUnavailable,
    dom.DataLost: DataUnreadable,
}


def to_s3_error(exc: BaseException) -> S3Error:
    """The S3 error for any exception; unknown ones become InternalError."""
    if isinstance(exc, S3Error):
        return exc
    for cls in type(exc).__mro__:
        s3_cls = DOMAIN_TO_S3.get(cls)
        if s3_cls is not None:
            text = str(exc)
            return s3_cls(text if text and s3_cls in (InvalidArgument, InvalidRequest) else None)
    return InternalError()
