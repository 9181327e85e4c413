"""AWS JSON-protocol answers shared by the rehearsal's stand-ins."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

JSON_11 = "application/x-amz-json-1.1"


def aws_error(status: int, code: str, message: str) -> Response:
    """An error as the JSON protocols send it (botocore reads ``__type`` and ``message``)."""
    return Response(json.dumps({"__type": code, "message": message}), status_code=status, media_type=JSON_11,
                    headers={"x-amzn-ErrorType": code})


def aws_answer(document: dict[str, Any]) -> Response:
    """A successful JSON-protocol answer."""
    return Response(json.dumps(document, default=str), media_type=JSON_11)
