"""Connection-level protection for uvicorn's HTTP/1.1 protocol (h11).

uvicorn times out idle keep-alive connections after a response, but not a connection that
never completes a request head: a client that opens sockets and sends nothing (or sends
headers a byte at a time) holds them forever, and with uvicorn's own concurrency limit
they made ``/ping`` answer 503. This protocol gives every request head a deadline (from
the connection's start, or from the previous response) and caps open connections at a
number far above real use, answering over the cap with our JSON 503. Slow *bodies* are the
app's to time out (``SAM_BODY_TIMEOUT_S``), where the answer can name the request; a
connection answered before its body was read is closed, not kept reading the rest.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("sam.server")


def _raw_response(status: int, reason: str, error: str, message: str) -> bytes:
    body = json.dumps({"error": error, "message": message, "request_id": None}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode()
    return head + body


def _frames_body_twice(headers: list[tuple[bytes, bytes]] | None) -> bool:
    """Whether a request head carries both Content-Length and Transfer-Encoding."""
    names = {name for name, _ in headers or []}
    return b"content-length" in names and b"transfer-encoding" in names


class GuardedH11Protocol(H11Protocol):
    """H11Protocol with a request-head deadline and a cap on open connections.

    Built per connection by uvicorn (``Config(http=...)``); the limits come from class
    attributes set by ``configured`` (uvicorn passes no extra arguments).
    """

    header_timeout_s: float = 10.0
    max_connections: int = 1024

    @classmethod
    def configured(cls, header_timeout_s: float, max_connections: int) -> type[GuardedH11Protocol]:
        """A subclass carrying these limits (one per server)."""
        return type("ConfiguredGuardedH11Protocol", (cls,),
                    {"header_timeout_s": header_timeout_s, "max_connections": max_connections})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning("connection refused: %d connections are open (limit %d)", len(self.connections),
                        self.max_connections)
            transport.write(_raw_response(503, "Service Unavailable", "overloaded",
                                          f"more than {self.max_connections} connections are open; retry shortly"))
            transport.close()
            return
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # a whole request head has arrived
            self._disarm_head_deadline()

    def on_response_complete(self) -> None:
        if _frames_body_twice(self.headers):
            # Content-Length with Transfer-Encoding may be a smuggling attempt: RFC 9112 section 6.1
            # requires the connection closed after the answer, before any pipelined request is read.
            self.transport.close()
            return
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.SEND_BODY:
            # Answered before the body was read (413, 503, 408...): uvicorn would go on reading and
            # dropping the rest, with no deadline at all, for as long as the client trickles bytes.
            self.transport.close()
            return
        self._arm_head_deadline()  # the next request on this keep-alive connection has the same deadline

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a response is still being written (pipelining): its completion re-arms the deadline
        started = bool(self.conn.trailing_data[0])
        if started:  # part of a request head arrived: say why the connection ends
            self.transport.write(_raw_response(408, "Request Timeout", "request_timeout",
                                               f"the request head did not arrive within {self.header_timeout_s:g} s"))
        self.transport.close()
