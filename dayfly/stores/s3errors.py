"""S3's error codes with their HTTP statuses, and the one exception that carries them."""

from __future__ import annotations

from ..errors import DayflyError

STATUS = {
    "AccessForbidden": 403, "BucketAlreadyExists": 409, "MalformedPolicy": 400,  # (access)
    "NoSuchBucketPolicy": 404, "NoSuchCORSConfiguration": 404, "MalformedPOSTRequest": 400,
    "NoSuchPublicAccessBlockConfiguration": 404, "InvalidPolicyDocument": 400,
    "AccessDenied": 403, "AuthorizationHeaderMalformed": 400,
    "AuthorizationQueryParametersError": 400, "BadDigest": 400, "BucketAlreadyOwnedByYou": 409,
    "BucketNotEmpty": 409, "EntityTooLarge": 400, "EntityTooSmall": 400, "IncompleteBody": 400,
    "InternalError": 500, "InvalidAccessKeyId": 403, "InvalidArgument": 400,
    "InvalidBucketName": 400, "InvalidDigest": 400, "InvalidEncryptionAlgorithmError": 400,
    "InvalidPart": 400, "InvalidPartOrder": 400, "InvalidStorageClass": 400,
    "InvalidRange": 416, "InvalidRequest": 400, "InvalidURI": 400, "KeyTooLongError": 400,
    "MalformedXML": 400, "MetadataTooLarge": 400, "MethodNotAllowed": 405,
    "MissingContentLength": 411, "NoSuchBucket": 404, "NoSuchKey": 404, "NoSuchUpload": 404,
    "NoSuchVersion": 404, "InvalidLocationConstraint": 400, "InvalidPartNumber": 416,
    "NotImplemented": 501, "NotModified": 304, "PreconditionFailed": 412,
    "RequestTimeTooSkewed": 403, "SignatureDoesNotMatch": 403, "XAmzContentSHA256Mismatch": 400,
}


class S3Error(DayflyError):
    """An S3 error: its code decides the HTTP status; `extra` adds elements to the XML body."""

    def __init__(self, code: str, message: str, **extra: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = STATUS[code]
        self.extra = extra
        self.headers: dict[str, str] = {}  # response headers (x-amz-delete-marker, ...)
