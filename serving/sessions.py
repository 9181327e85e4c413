"""SageMaker stateful sessions bound to a cached image embedding.

``X-Amzn-SageMaker-Session-Id: NEW_SESSION`` opens a session for the request's image; we
answer ``X-Amzn-SageMaker-New-Session-Id: <id>; Expires=<UTC ISO time>``. Later requests
with that id may omit the image. A close answers ``X-Amzn-SageMaker-Closed-Session-Id``.
An open session pins its embedding against cache eviction (within the cache's pinned
budget); expiry or close releases it. The number of open sessions is bounded.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cachetools import TTLCache

from runtime.cache import EmbeddingCache
from runtime.errors import BadRequest, CapacityExhausted
from serving.errors import SessionExpired, UnknownSession

NEW_SESSION = "NEW_SESSION"
SESSION_ID_PATTERN = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*", re.ASCII)
MAX_SESSION_ID_CHARS = 256


@dataclass(frozen=True)
class Session:
    """An open session: its id, the image it is bound to, and its expiry (monotonic seconds)."""

    session_id: str
    image_id: str
    expires_monotonic: float
    expires_utc: datetime

    def header_value(self) -> str:
        """The value of ``X-Amzn-SageMaker-New-Session-Id``."""
        return f"{self.session_id}; Expires={self.expires_utc.strftime('%Y-%m-%dT%H:%M:%SZ')}"


def check_session_header(value: str) -> str:
    """Validate a client's session header: ``NEW_SESSION`` or an id of SageMaker's pattern."""
    if value == NEW_SESSION:
        return value
    if len(value) > MAX_SESSION_ID_CHARS or not SESSION_ID_PATTERN.fullmatch(value):
        raise BadRequest("X-Amzn-SageMaker-Session-Id must be NEW_SESSION or a session id from an earlier response")
    return value


class SessionStore:
    """Thread-safe open sessions with a time to live; remembers recently expired ids."""

    def __init__(self, cache: EmbeddingCache, ttl_s: float, max_sessions: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if ttl_s <= 0 or max_sessions <= 0:
            raise ValueError("session TTL and maximum count must be positive")
        self._cache = cache
        self._ttl_s = ttl_s
        self._max_sessions = max_sessions
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, Session] = {}
        self._expired: TTLCache[str, bool] = TTLCache(maxsize=4096, ttl=24 * 3600.0)

    def open(self, image_id: str) -> Session:
        """Open a session bound to ``image_id`` (pinning its embedding)."""
        with self._lock:
            self._sweep()
            if len(self._sessions) >= self._max_sessions:
                raise CapacityExhausted(f"{self._max_sessions} sessions are open; close some or retry later")
            self._cache.pin(image_id)
            now = self._clock()
            session = Session(uuid.uuid4().hex, image_id, now + self._ttl_s,
                              datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=self._ttl_s))
            self._sessions[session.session_id] = session
            return session

    def get(self, session_id: str) -> Session:
        """The open session ``session_id``; ``SessionExpired`` or ``UnknownSession`` otherwise."""
        with self._lock:
            self._sweep()
            session = self._sessions.get(session_id)
            if session is not None:
                return session
            if session_id in self._expired:
                raise SessionExpired(f"session {session_id} has expired; open a new one with NEW_SESSION")
            raise UnknownSession(f"session {session_id} is unknown or already closed")

    def close(self, session_id: str) -> None:
        """Close an open session and release its embedding."""
        with self._lock:
            session = self._sessions.pop(session_id, None)
            if session is None:
                if session_id in self._expired:
                    raise SessionExpired(f"session {session_id} has already expired")
                raise UnknownSession(f"session {session_id} is unknown or already closed")
            self._cache.unpin(session.image_id)

    def count(self) -> int:
        with self._lock:
            self._sweep()
            return len(self._sessions)

    def _sweep(self) -> None:
        now = self._clock()
        for session_id in [s for s, session in self._sessions.items() if session.expires_monotonic <= now]:
            session = self._sessions.pop(session_id)
            self._cache.unpin(session.image_id)
            self._expired[session_id] = True

