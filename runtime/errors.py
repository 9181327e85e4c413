"""One exception tree for the whole service; the server maps it to HTTP by class.

Every error a client can cause is a ``ServiceError`` subclass with an HTTP status and a
stable machine-readable ``code``. Anything that is not a ``ServiceError`` is our fault
and becomes a generic 500 with a request id (see the server's error handler).
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error that has a defined HTTP answer."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ServiceError):
    """The request is malformed: JSON, base64, zip, points, options."""

    status_code = 400
    code = "bad_request"


class InvalidImage(BadRequest):
    """The image bytes cannot be decoded, or the image is refused (too many pixels)."""

    code = "invalid_image"


class InvalidPoints(BadRequest):
    """Points or labels are missing, of the wrong type, not finite, or outside the image."""

    code = "invalid_points"


class NotFound(ServiceError):
    """An unknown route."""

    status_code = 404
    code = "not_found"


class UnknownImageId(ServiceError):
    """An ``image_id`` that was never issued, or whose embedding has been evicted."""

    status_code = 404
    code = "unknown_image_id"


class UnknownSession(ServiceError):
    """A session id that was never opened or was already closed."""

    status_code = 404
    code = "unknown_session"


class SessionExpired(ServiceError):
    """A session id that existed but whose time to live has passed."""

    status_code = 410
    code = "session_expired"


class NotAcceptable(ServiceError):
    """No response encoding satisfies the request's ``Accept`` header."""

    status_code = 406
    code = "not_acceptable"


class PayloadTooLarge(ServiceError):
    """The request body (or a zip member, or an image) exceeds a configured limit."""

    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(ServiceError):
    """The request's ``Content-Type`` is not one we decode."""

    status_code = 415
    code = "unsupported_media_type"


class CapacityExhausted(ServiceError):
    """A bounded resource (pinned session embeddings) is full; try later or close sessions."""

    status_code = 429
    code = "capacity_exhausted"


class NotReady(ServiceError):
    """The model is not loaded yet, or the server is shutting down."""

    status_code = 503
    code = "not_ready"


class ModelLoadError(Exception):
    """A model directory that cannot be served (missing, truncated or inconsistent files).

    Not a ``ServiceError``: it happens at start-up, and ``serve`` exits non-zero with it.
    """


class ProviderUnavailable(ModelLoadError):
    """The configuration requires an execution provider that ONNX Runtime cannot give."""
