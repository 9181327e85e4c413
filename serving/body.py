"""Reading a request body within a byte limit and a deadline.

A body larger than the limit is refused as soon as that is known (declared
``Content-Length`` or bytes received), a body that does not arrive in time gets a 408 that
says how much came, and a client that disconnects mid-body is the client's doing (499,
nginx's "client closed request"), not a server error.
"""

from __future__ import annotations

import asyncio

from starlette.requests import ClientDisconnect, Request

from runtime.errors import BadRequest, PayloadTooLarge
from serving.errors import BodyTimeout, ClientClosedRequest


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The whole body, at most ``limit`` bytes, within ``timeout_s`` seconds."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):
            raise BadRequest(f"Content-Length {declared[:40]!r} is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"the request body has {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    received = 0

    async def receive_all() -> None:
        nonlocal received
        async for chunk in request.stream():
            received += len(chunk)
            if received > limit:
                raise PayloadTooLarge(f"the request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)

    try:
        await asyncio.wait_for(receive_all(), timeout_s)
    except TimeoutError as exc:
        expected = f" of {declared}" if declared is not None else ""
        raise BodyTimeout(f"the request body did not arrive within {timeout_s:g} s "
                          f"({received}{expected} bytes received)") from exc
    except ClientDisconnect as exc:
        raise ClientClosedRequest(f"the client disconnected after {received} bytes of the body") from exc
    return b"".join(chunks)
