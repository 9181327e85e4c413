"""The server's own errors, and the one mapping from every error class to an HTTP status.

``runtime.errors`` holds what can be wrong with a request's content; the errors here exist
only because there is an HTTP server: content negotiation, media types, readiness, time
limits, and SageMaker's stateful sessions. ``http_status`` is the only place that knows
status codes; the server, the toolkit adapters and the OpenAPI schema use it.
"""

from __future__ import annotations

from runtime.errors import (
    BadRequest,
    CapacityExhausted,
    DeviceMemoryExhausted,
    PayloadTooLarge,
    ServiceError,
    SharedTierFailing,
    SharedTierOff,
    UnknownImageId,
)


class UnknownSession(ServiceError):
    """A session id that was never opened or was already closed."""

    code = "unknown_session"


class SessionExpired(ServiceError):
    """A session id that existed but whose time to live has passed."""

    code = "session_expired"


class NotAcceptable(ServiceError):
    """No response encoding satisfies the request's ``Accept`` header."""

    code = "not_acceptable"


class UnsupportedMediaType(ServiceError):
    """The request's ``Content-Type`` is not one we read."""

    code = "unsupported_media_type"


class NotReady(ServiceError):
    """The model is not loaded yet, or the server is shutting down."""

    code = "not_ready"


class Overloaded(ServiceError):
    """Every worker thread is busy and the wait queue is full (or too many connections); retry later."""

    code = "overloaded"


class RequestTimeout(ServiceError):
    """The request did not finish within the configured time (its work may still complete)."""

    code = "timeout"


class BodyTimeout(ServiceError):
    """The request body did not arrive within its deadline (a stalled or very slow upload)."""

    code = "request_timeout"


class ClientClosedRequest(ServiceError):
    """The client disconnected before its request was complete (no answer can reach it)."""

    code = "client_closed_request"


#: HTTP status per error class; a subclass takes its nearest listed ancestor's status.
HTTP_STATUS: dict[type[ServiceError], int] = {
    BadRequest: 400,
    UnknownImageId: 404,
    UnknownSession: 404,
    NotAcceptable: 406,
    BodyTimeout: 408,
    SessionExpired: 410,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    CapacityExhausted: 429,
    ClientClosedRequest: 499,
    NotReady: 503,
    Overloaded: 503,
    DeviceMemoryExhausted: 503,
    RequestTimeout: 503,
    SharedTierOff: 503,
    SharedTierFailing: 503,
}


def http_status(error: ServiceError) -> int:
    """The HTTP status of ``error``: its class's, or its nearest ancestor's; 500 if none is listed."""
    for cls in type(error).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500
