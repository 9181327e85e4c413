"""The runtime's exception tree: what can go wrong with a request's image, prompts or ids.

Every error a client can cause is a ``ServiceError`` subclass with a stable machine-readable
``code`` and a message that names the problem. The runtime knows nothing of HTTP: the
server maps these classes to status codes in one place (``serving.errors.http_status``).
Anything that is not a ``ServiceError`` is our fault (a generic 500 with a request id).
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of every error caused by the request rather than by us."""

    code: str = "service_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ServiceError):
    """The request is malformed: JSON, base64, zip, points, options."""

    code = "bad_request"


class InvalidImage(BadRequest):
    """The image bytes cannot be decoded, or its geometry cannot be served."""

    code = "invalid_image"


class InvalidPoints(BadRequest):
    """Points or labels are missing, of the wrong type, not finite, or outside the image."""

    code = "invalid_points"


class OutputTooLarge(BadRequest):
    """The requested output format cannot hold the output's size (e.g. a WebP cut-out over 14 MP)."""

    code = "output_too_large"


class InvalidEmbedding(BadRequest):
    """A brought embedding (``embedding`` instead of a photo) with a wrong dtype, shape, data, values or sizes."""

    code = "invalid_embedding"


class EmbeddingModelMismatch(BadRequest):
    """A brought embedding made by another model: its model_id is not this model's."""

    code = "embedding_model_mismatch"


class UnknownImageId(ServiceError):
    """An ``image_id`` that was never issued, or whose embedding has been evicted."""

    code = "unknown_image_id"


class PayloadTooLarge(ServiceError):
    """Something in the request exceeds a configured limit (body, zip member, image pixels)."""

    code = "payload_too_large"


class AnswerTooLarge(PayloadTooLarge):
    """The answer would exceed the response limit (SageMaker's 6 MiB real-time response)."""

    code = "output_too_large"


class CapacityExhausted(ServiceError):
    """A bounded resource (pinned session embeddings) is full; try later or close sessions."""

    code = "capacity_exhausted"


class DeviceMemoryExhausted(ServiceError):
    """The GPU's memory (or its render slots) cannot take this request now; retry later (503)."""

    code = "overloaded"


class SharedTierOff(ServiceError):
    """A warm request on a server without the shared embedding tier (no ``SAM_SHARED_CACHE_URL``, or its
    password could not be read): there is nowhere to store the embedding (503)."""

    code = "shared_tier_off"


class SharedTierFailing(ServiceError):
    """The shared embedding tier did not answer or refused the write; retry later (503)."""

    code = "shared_tier_unavailable"


class ModelLoadError(Exception):
    """A model directory that cannot be served (missing, truncated or inconsistent files).

    Not a ``ServiceError``: it happens at start-up, and ``serve`` exits non-zero with it.
    """


class ProviderUnavailable(ModelLoadError):
    """The configuration requires an execution provider that ONNX Runtime cannot give."""
