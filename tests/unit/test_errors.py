"""Every client error has exactly one HTTP status, given in one place (serving.errors.HTTP_STATUS)."""

from __future__ import annotations

import inspect

import pytest

from runtime import errors as runtime_errors
from runtime.errors import InvalidImage, InvalidPoints, ServiceError
from serving import errors as serving_errors
from serving import workers
from serving.errors import HTTP_STATUS, http_status


def _service_errors() -> list[type[ServiceError]]:
    found = []
    for module in (runtime_errors, serving_errors, workers):
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, ServiceError) and cls is not ServiceError:
                found.append(cls)
    return found


@pytest.mark.parametrize("cls", _service_errors(), ids=lambda cls: cls.__name__)
def test_every_service_error_has_a_4xx_or_503_and_a_code(cls: type[ServiceError]) -> None:
    status = http_status(cls("x"))
    assert 400 <= status < 500 or status == 503, (cls, status)
    assert cls.code != ServiceError.code


def test_subclasses_take_their_ancestors_status() -> None:
    assert http_status(InvalidImage("x")) == http_status(InvalidPoints("x")) == 400
    assert InvalidImage not in HTTP_STATUS


def test_the_runtime_errors_carry_no_status() -> None:
    assert not any(hasattr(cls, "status_code") for cls in _service_errors())
