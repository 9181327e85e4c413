"""Connection-level protection for uvicorn's HTTP/1.1 protocol (h11).

uvicorn times out idle keep-alive connections after a response, but not a connection that
never completes a request head: a client that opens sockets and sends nothing (or sends
headers a byte at a time) holds them forever, and with uvicorn's own concurrency limit
they made ``/ping`` answer 503. This protocol gives every request head a deadline (from
the connection's start, or from the previous response) and caps open connections at a
number far above real use, answering over the cap with our JSON 503. Slow *bodies* are the
app's to time out (``SAM_BODY_TIMEOUT_S``), where the answer can name the request; a
connection answered before its body was read is closed, not kept reading the rest.

Answers have a send deadline too: once an answer no longer fits the socket buffers (the
transport pauses writing), the client has ``send_timeout_s`` to take the rest, or the
connection is aborted and its buffered answer freed. A request framed by both
Content-Length and Transfer-Encoding ends its connection after the answer (RFC 9112 6.1),
and a request h11 cannot parse gets our JSON error with a request id, not uvicorn's text.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import uuid
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("sam.server")


#: Reason phrases of the statuses answered below the app (h11's hints: 400, 414, 431; ours: 408, 503).
_REASONS = {400: "Bad Request", 408: "Request Timeout", 414: "URI Too Long", 431: "Request Header Fields Too Large",
            503: "Service Unavailable"}


def _raw_response(status: int, error: str, message: str, request_id: str | None = None) -> bytes:
    """A whole ``connection: close`` answer with our JSON error body (written below h11)."""
    body = json.dumps({"error": error, "message": message, "request_id": request_id}).encode()
    id_header = f"x-request-id: {request_id}\r\n" if request_id else ""
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{id_header}connection: close\r\n\r\n").encode()
    return head + body


def _protocol_error_answer(exc: BaseException | None) -> tuple[int, str]:
    """(status, message) for a request h11 refused: h11's status hint and its reason, ASCII, bounded."""
    status = getattr(exc, "error_status_hint", 400)
    detail = str(exc).encode("ascii", "backslashreplace").decode()[:200] if exc is not None else ""
    return (status if status in _REASONS else 400), f"malformed HTTP request: {detail or 'unparseable'}"


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
    send_timeout_s: float = 30.0

    @classmethod
    def configured(cls, header_timeout_s: float, max_connections: int, send_timeout_s: float
                   ) -> type[GuardedH11Protocol]:
        """A subclass carrying these limits (one per server)."""
        return type("ConfiguredGuardedH11Protocol", (cls,),
                    {"header_timeout_s": header_timeout_s, "max_connections": max_connections,
                     "send_timeout_s": send_timeout_s})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None
        self._send_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            log.warning("connection refused: %d connections are open (limit %d)", len(self.connections),
                        self.max_connections)
            transport.write(_raw_response(503, "overloaded",
                                          f"more than {self.max_connections} connections are open; retry shortly"))
            transport.close()
            return
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        self._disarm_send_deadline()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """h11 refused the request (uvicorn calls this inside its ``except RemoteProtocolError``):
        our JSON error with a request id instead of uvicorn's plain text, then the connection closes."""
        status, message = _protocol_error_answer(sys.exc_info()[1])
        request_id = uuid.uuid4().hex
        log.warning("malformed HTTP request", extra={"request_id": request_id, "status": status, "detail": message})
        self._disarm_head_deadline()
        self.transport.write(_raw_response(status, "bad_request", message, request_id))
        self.transport.close()

    def pause_writing(self) -> None:
        """The answer no longer fits the socket buffers: the client has ``send_timeout_s`` to take it."""
        super().pause_writing()
        if self._send_deadline is None:
            self._send_deadline = self.loop.call_later(self.send_timeout_s, self._send_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._disarm_send_deadline()

    def _disarm_send_deadline(self) -> None:
        if self._send_deadline is not None:
            self._send_deadline.cancel()
            self._send_deadline = None

    def _send_timed_out(self) -> None:
        self._send_deadline = None
        buffered = self.transport.get_write_buffer_size()
        log.warning("answer not taken within the send deadline: connection aborted",
                    extra={"send_timeout_s": self.send_timeout_s, "unsent_bytes": buffered})
        self.transport.abort()  # close() would keep the unsent answer until the client read it

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
            self.transport.write(_raw_response(408, "request_timeout",
                                               f"the request head did not arrive within {self.header_timeout_s:g} s"))
        self.transport.close()
