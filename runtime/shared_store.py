"""The shared embedding tier's client: a Redis-protocol store (Valkey, Redis, ElastiCache).

Every failure (down, stalled, garbage, foreign model) is a miss, bounded by millisecond
timeouts, and logged once per state change (healthy <-> failing).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import redis

from runtime.shared_entry import EMBEDDING_BYTES, SharedEntry, decode_entry, encode_entry

_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class SharedStoreSettings:
    """``url``: ``redis://`` or ``rediss://`` (TLS); timeouts in milliseconds; TTL in seconds."""

    url: str
    password: str | None = None
    connect_timeout_ms: int = 50
    command_timeout_ms: int = 200
    ttl_s: int = 3600


class SharedStore:
    """Get and put embeddings of one model (``identity``, 32 bytes) by image id."""

    def __init__(self, settings: SharedStoreSettings, identity: bytes,
                 embedding_bytes: int = EMBEDDING_BYTES) -> None:
        self._settings = settings
        self._identity = identity
        self._embedding_bytes = embedding_bytes
        self._failing = False
        self._client = redis.Redis.from_url(
            settings.url, password=settings.password,
            socket_connect_timeout=settings.connect_timeout_ms / 1000,
            socket_timeout=settings.command_timeout_ms / 1000, retry_on_timeout=False)

    def _key(self, image_id: str) -> str:
        return f"sam:emb:{self._identity.hex()}:{image_id}"

    def _note(self, failing: bool, detail: str = "") -> None:
        if failing != self._failing:
            self._failing = failing
            if failing:
                _LOG.warning("shared cache unavailable: %s", detail)
            else:
                _LOG.warning("shared cache available again")

    def get(self, image_id: str) -> SharedEntry | None:
        """The stored entry, or ``None`` for a miss, a failing store or a bad value."""
        try:
            value = self._client.get(self._key(image_id))
        except redis.RedisError as exc:
            self._note(True, repr(exc))
            return None
        self._note(False)
        if not isinstance(value, bytes):
            return None
        return decode_entry(self._identity, value, self._embedding_bytes)

    def put(self, image_id: str, entry: SharedEntry) -> bool:
        """Store ``entry`` with the TTL; ``False`` when the store failed."""
        try:
            self._client.set(self._key(image_id), encode_entry(self._identity, entry),
                             ex=self._settings.ttl_s)
        except redis.RedisError as exc:
            self._note(True, repr(exc))
            return False
        self._note(False)
        return True
