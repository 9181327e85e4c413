"""The sagemaker-inference handler contract: ``model_fn``, ``input_fn``, ``predict_fn``, ``output_fn``.

AWS's prebuilt framework containers (the sagemaker-inference toolkit's ``Transformer``)
call these with ``code/inference.py`` from ``model.tar.gz``; our own server calls the same
functions with a ``RequestContext``. Under the toolkit a client error must be one of its
``BaseInferenceToolkitError`` subclasses to get its status code, so ``ServiceError``s are
re-raised as classes that are both (our server still maps them by ``ServiceError``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

from runtime.errors import ServiceError
from serving.config import ServerSettings
from serving.errors import http_status
from serving.responses import Prediction
from serving.service import HoldService, Invocation, RequestContext, parse, serialise

try:  # present in AWS's framework containers and in our dev environment, not needed to serve
    from sagemaker_inference.errors import BaseInferenceToolkitError
except ImportError:  # pragma: no cover - exercised only where the toolkit is absent
    BaseInferenceToolkitError = None

F = TypeVar("F", bound=Callable[..., Any])
_ADAPTED: dict[type, type] = {}


def _toolkit_error(exc: ServiceError) -> ServiceError:
    """``exc`` as an instance that is also a toolkit error with the same status and message."""
    if BaseInferenceToolkitError is None:
        return exc
    cls = _ADAPTED.get(type(exc))
    if cls is None:
        cls = _ADAPTED[type(exc)] = _toolkit_class(type(exc))
    return cast(ServiceError, cls(exc))


def _toolkit_class(base: type[ServiceError]) -> type:
    toolkit: Any = BaseInferenceToolkitError

    class Adapted(base, toolkit):  # type: ignore[valid-type, misc]
        def __init__(self, original: ServiceError) -> None:
            toolkit.__init__(self, http_status(original), original.message, f"{original.code}: {original.message}")
            self.code = original.code

    Adapted.__name__ = Adapted.__qualname__ = f"Toolkit{base.__name__}"
    return Adapted


def _service_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ServiceError as exc:
            raise _toolkit_error(exc) from exc
    return cast(F, wrapper)


def model_fn(model_dir: str) -> HoldService:
    """Load the model from ``model_dir`` (the toolkit passes /opt/ml/model) and warm it up."""
    settings = ServerSettings.from_env(os.environ)
    return HoldService.from_model_dir(Path(model_dir), settings)


@_service_errors
def input_fn(input_data: bytes | str, content_type: str | None, context: Any = None) -> Invocation:
    """Decode a request body of ``content_type`` (JSON arrives as str under the toolkit)."""
    return parse(input_data, content_type, context if isinstance(context, RequestContext) else None)


@_service_errors
def predict_fn(data: Invocation, model: HoldService) -> Prediction:
    """Extract the holds (resolving sessions when our server supplied the header)."""
    return model.predict(data)


@_service_errors
def output_fn(prediction: Prediction, accept: str | None) -> tuple[bytes, str]:
    """Encode the prediction for ``accept``: (body, content type)."""
    return serialise(prediction, accept)
