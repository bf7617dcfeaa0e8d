"""THE Swift error table: every Swift error answer we give, and the one mapping
from domain errors (object service, metadata) to them.

A SwiftError carries an HTTP status and the short body Swift sends with it
(Swift's own text: the small HTML fragments of its generic errors, or a plain
sentence for a 400 that says what was wrong). The error middleware renders it
through `render_swift_error` (frontend.py). Anything not in the table becomes a
500 and is logged with the request id.
"""

from __future__ import annotations

from typing import ClassVar

from kurastore.gateway.objects import errors as dom


class SwiftError(Exception):
    status: ClassVar[int] = 500
    body: ClassVar[str] = (
        "<html><h1>Internal Error</h1><p>The server has either erred or is incapable of "
        "performing the requested operation.</p></html>"
    )
    content_type: ClassVar[str] = "text/html"

    def __init__(self, text: str | None = None, headers: dict[str, str] | None = None,
                 *, html: bool = False) -> None:
        super().__init__(text or self.body)
        self.headers = headers or {}
        self.html = html  # a specific message Swift still labels text/html

    @property
    def text(self) -> str:
        return str(self.args[0]) if self.args else self.body

    @property
    def is_plain(self) -> bool:
        """A specific message (text/plain) rather than Swift's generic HTML body."""
        return self.text != self.body and not self.html


def _error(name: str, status: int, title: str, explanation: str) -> type[SwiftError]:
    body = f"<html><h1>{title}</h1><p>{explanation}</p></html>"
    return type(name, (SwiftError,), {"status": status, "body": body})


BadRequest = _error("BadRequest", 400, "Bad Request",
                    "The server could not comply with the request since it is either "
                    "malformed or otherwise incorrect.")
Unauthorized = _error("Unauthorized", 401, "Unauthorized",
                      "This server could not verify that you are authorized to access the "
                      "document you requested.")
Forbidden = _error("Forbidden", 403, "Forbidden", "Access was denied to this resource.")
NotFound = _error("NotFound", 404, "Not Found", "The resource could not be found.")
MethodNotAllowed = _error("MethodNotAllowed", 405, "Method Not Allowed",
                          "The method is not allowed for this resource.")
Conflict = _error("Conflict", 409, "Conflict",
                  "There was a conflict when trying to complete your request.")
RequestTimeout = _error("RequestTimeout", 408, "Request Timeout",
                        "The client did not produce a request within the time that the "
                        "server was prepared to wait.")
LengthRequired = _error("LengthRequired", 411, "Length Required", "Length Required")
PreconditionFailed = _error("PreconditionFailed", 412, "Precondition Failed",
                            "A precondition for this request was not satisfied.")
RequestEntityTooLarge = _error("RequestEntityTooLarge", 413, "Request Entity Too Large",
                               "The body of your request was too large for this server.")
RangeNotSatisfiable = _error("RangeNotSatisfiable", 416, "Requested Range Not Satisfiable",
                             "The Range requested is not available.")
UnprocessableEntity = _error("UnprocessableEntity", 422, "Unprocessable Entity",
                             "Unable to process the contained instructions")
InternalError = _error("InternalError", 500, "Internal Error",
                       "The server has either erred or is incapable of performing the "
                       "requested operation.")
NotImplemented_ = _error("NotImplemented", 501, "Not Implemented",
                         "The requested method is not implemented by this server.")
ServiceUnavailable = _error("ServiceUnavailable", 503, "Service Unavailable",
                            "The server is currently unavailable. Please try again at a "
                            "later time.")


class NotModified(SwiftError):
    """304: no body; carries the validators of the version."""

    status = 304
    body = ""


class ClientDisconnect(SwiftError):
    """499: the body ended short of its stated length (Swift's own code)."""

    status = 499
    body = ("<html><h1>Client Disconnect</h1><p>The client was disconnected during "
            "request.</p></html>")


# Domain error -> Swift error. Looked up along the exception's MRO.
DOMAIN_TO_SWIFT: dict[type[BaseException], type[SwiftError]] = {
    dom.BucketNotFound: NotFound,
    dom.BucketAlreadyExists: Conflict,
    dom.BucketAlreadyOwnedByYou: Conflict,
    dom.BucketNotEmpty: Conflict,
    dom.ObjectNotFound: NotFound,
    dom.VersionNotFound: NotFound,
    dom.UploadNotFound: NotFound,
    dom.UserNotFound: Unauthorized,
    dom.AccessKeyNotFound: Unauthorized,
    dom.UserExists: Conflict,
    dom.PreconditionFailed: PreconditionFailed,
    dom.VersionProtected: Forbidden,  # an S3 Object Lock guard (Swift never asks one)
    dom.ConditionalConflict: Conflict,
    dom.MetadataUnavailable: ServiceUnavailable,
    dom.InvalidRange: RangeNotSatisfiable,
    dom.NotModified: NotModified,
    dom.InvalidPart: BadRequest,
    dom.InvalidPartOrder: BadRequest,
    dom.EntityTooSmall: BadRequest,
    dom.EntityTooLarge: RequestEntityTooLarge,
    dom.IncompleteBody: ClientDisconnect,
    dom.InvalidArgument: BadRequest,
    dom.QuorumNotReached: ServiceUnavailable,
    dom.DataLost: ServiceUnavailable,  # as Swift's proxy: too few fragments answered
}


def to_swift_error(exc: BaseException) -> SwiftError:
    """The Swift error for any exception; unknown ones become InternalError."""
    if isinstance(exc, SwiftError):
        return exc
    for cls in type(exc).__mro__:
        swift_cls = DOMAIN_TO_SWIFT.get(cls)
        if swift_cls is not None:
            text = str(exc) if swift_cls is BadRequest and str(exc) else None
            return swift_cls(text)
    return InternalError()
