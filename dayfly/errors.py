"""One exception tree for the whole platform.

    DayflyError                     base; carries an HTTP status and a Lambda error type
    ├── ClientError                 the caller asked for something wrong (4xx)
    │   ├── InvalidParameter        400 InvalidParameterValueException
    │   ├── InvalidRequestContent   400 InvalidRequestContentException (bad JSON payload)
    │   ├── Unauthorized            401 UnauthorizedException (a missing or wrong token)
    │   ├── Forbidden               403 AccessDeniedException (a credential not valid here)
    │   ├── ResourceNotFound        404 ResourceNotFoundException
    │   ├── ResourceConflict        409 ResourceConflictException
    │   ├── PreconditionFailed      412 PreconditionFailedException (stale RevisionId)
    │   ├── RequestTooLarge         413 RequestTooLargeException
    │   ├── TooManyRequests         429 TooManyRequestsException
    │   └── ClientGone              499 (no reply: the caller hung up while its request waited)
    └── PlatformError               dayfly itself failed (5xx)
        ├── ServiceError            500 ServiceException
        └── SandboxError            a sandbox could not be started or died outside an invocation

Function errors (the handler raised, timed out or crashed) are not exceptions of
the platform: they are results (`types.InvokeResult` with `error_type`).
"""

from __future__ import annotations


class DayflyError(Exception):
    """Base of every error dayfly raises on purpose."""

    status = 500
    code = "ServiceException"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class ClientError(DayflyError):
    """The request was wrong; nothing was changed."""

    status = 400
    code = "InvalidParameterValueException"


class InvalidParameter(ClientError):
    """A parameter has a value dayfly cannot accept."""


class InvalidRequestContent(ClientError):
    """The request body could not be parsed."""

    code = "InvalidRequestContentException"


class Unauthorized(ClientError):
    """The request's credentials are missing or wrong."""

    status = 401
    code = "UnauthorizedException"


class Forbidden(ClientError):
    """The request carries a credential that is not valid for it."""

    status = 403
    code = "AccessDeniedException"


class ResourceNotFound(ClientError):
    """A function, version or alias does not exist."""

    status = 404
    code = "ResourceNotFoundException"


class ResourceConflict(ClientError):
    """The resource exists already or changed under the caller."""

    status = 409
    code = "ResourceConflictException"


class PreconditionFailed(ClientError):
    """The caller's RevisionId is not the current one."""

    status = 412
    code = "PreconditionFailedException"


class RequestTooLarge(ClientError):
    """The payload is over the limit."""

    status = 413
    code = "RequestTooLargeException"


class TooManyRequests(ClientError):
    """The function is at its concurrency limit and its queue is full."""

    status = 429
    code = "TooManyRequestsException"

    def __init__(self, message: str, *, hint: str | None = None, retry_after_s: int = 1) -> None:
        super().__init__(message, hint=hint)
        self.retry_after_s = retry_after_s  # sent as Retry-After


class ClientGone(ClientError):
    """The caller disconnected while its invocation waited in the queue; nothing ran."""

    status = 499
    code = "ClientClosedRequest"


class PlatformError(DayflyError):
    """dayfly failed; the caller did nothing wrong."""


class ServiceError(PlatformError):
    """An unexpected internal failure."""


class SandboxError(PlatformError):
    """A sandbox could not be started, or its zygote died."""

    code = "ServiceException"
