"""The shared embedding tier's client: a Redis-protocol store (Valkey, Redis, ElastiCache).

Every failure (down, stalled, garbage, foreign model) is a miss, bounded by millisecond
timeouts, and logged once per state change (healthy <-> failing). After a failure the store
is not asked again for ``retry_after_ms`` (those lookups are ``skipped``), so a stalled store
costs at most one command timeout per retry period, not one per request.

Keys: ``sam:emb:<model identity hex>:<image id>`` holds an entry (``runtime.shared_entry``)
with a TTL; ``sam:lock:<model identity hex>:<image id>`` is the short encode lock.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Literal

import redis

from runtime.shared_entry import EMBEDDING_BYTES, SharedEntry, decode_entry, encode_entry

_LOG = logging.getLogger(__name__)

#: What one lookup found: an entry, no entry, or a store that failed or lied.
Outcome = Literal["hit", "miss", "error"]
#: Deletes the lock only if it still holds our token (another instance may hold it by now).
_COUNTER_OF: dict[Outcome, str] = {"hit": "hits", "miss": "misses", "error": "errors"}
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


@dataclass(frozen=True)
class SharedStoreSettings:
    """``url``: ``redis://`` or ``rediss://`` (TLS), no password in it; timeouts in milliseconds;
    ``ttl_s``: seconds an entry lives; the encode lock lives ``lock_ttl_ms`` and a waiter waits at
    most ``lock_wait_ms`` before encoding anyway; ``retry_after_ms``: pause after a failure."""

    url: str
    connect_timeout_ms: int = 50
    command_timeout_ms: int = 200
    ttl_s: int = 3600
    lock_ttl_ms: int = 30_000
    lock_wait_ms: int = 10_000
    retry_after_ms: int = 1000


@dataclass
class StoreCounters:
    """Counts since start-up: lookups by outcome, lookups skipped while failing, writes."""

    hits: int = 0
    misses: int = 0
    errors: int = 0
    skipped: int = 0
    writes: int = 0
    write_errors: int = 0


class SharedStore:
    """Get and put entries of one model (``identity``, 32 bytes) by image id; errors are misses."""

    def __init__(self, settings: SharedStoreSettings, identity: bytes,
                 embedding_bytes: int = EMBEDDING_BYTES, password: str | None = None) -> None:
        self.settings = settings
        self._identity = identity
        self._embedding_bytes = embedding_bytes
        self._failing = False
        self._retry_at = 0.0
        self._lock = threading.Lock()
        self.counters = StoreCounters()
        self._client = redis.Redis.from_url(
            settings.url, password=password,
            socket_connect_timeout=settings.connect_timeout_ms / 1000,
            socket_timeout=settings.command_timeout_ms / 1000, retry_on_timeout=False)

    @property
    def available(self) -> bool:
        """Whether the last command reached the store (False while failing, until a retry succeeds)."""
        with self._lock:
            return not self._failing

    def _key(self, kind: str, image_id: str) -> str:
        return f"sam:{kind}:{self._identity.hex()}:{image_id}"

    def _paused(self) -> bool:
        """Whether the store failed less than ``retry_after_ms`` ago (then it is not asked)."""
        with self._lock:
            if self._failing and time.monotonic() < self._retry_at:
                self.counters.skipped += 1
                return True
            return False

    def _note(self, failing: bool, detail: str = "") -> None:
        """Record the store's state; log only when it changes."""
        with self._lock:
            if failing:
                self._retry_at = time.monotonic() + self.settings.retry_after_ms / 1000
            if failing == self._failing:
                return
            self._failing = failing
        if failing:
            _LOG.warning("shared cache unavailable (every lookup is a miss until it answers): %s", detail)
        else:
            _LOG.warning("shared cache available again")

    def _count(self, outcome: Outcome) -> Outcome:
        name = _COUNTER_OF[outcome]
        with self._lock:
            setattr(self.counters, name, getattr(self.counters, name) + 1)
        return outcome

    def get(self, image_id: str) -> tuple[SharedEntry | None, Outcome]:
        """(the stored entry or ``None``, what the lookup found); a bad or foreign value is an error."""
        if self._paused():
            return None, "error"
        try:
            value = self._client.get(self._key("emb", image_id))
        except redis.RedisError as exc:
            self._note(True, repr(exc))
            return None, self._count("error")
        self._note(False)
        if value is None:
            return None, self._count("miss")
        entry = decode_entry(self._identity, value, self._embedding_bytes) if isinstance(value, bytes) else None
        if entry is None:
            _LOG.warning("shared cache: the value under image %s is not a valid entry of this model; ignored", image_id)
            return None, self._count("error")
        return entry, self._count("hit")

    def put(self, image_id: str, entry: SharedEntry) -> bool:
        """Store ``entry`` with the TTL; ``False`` when the store failed."""
        if self._paused():
            return False
        try:
            self._client.set(self._key("emb", image_id), encode_entry(self._identity, entry),
                             ex=self.settings.ttl_s)
        except redis.RedisError as exc:
            self._note(True, repr(exc))
            with self._lock:
                self.counters.write_errors += 1
            return False
        self._note(False)
        with self._lock:
            self.counters.writes += 1
        return True

    def try_lock(self, image_id: str) -> tuple[str | None, bool]:
        """(our token if we took the encode lock, whether another instance holds it)."""
        if self._paused():
            return None, False
        token = uuid.uuid4().hex
        try:
            taken = self._client.set(self._key("lock", image_id), token, nx=True, px=self.settings.lock_ttl_ms)
        except redis.RedisError as exc:
            self._note(True, repr(exc))
            return None, False
        self._note(False)
        return (token, False) if taken else (None, True)

    def locked(self, image_id: str) -> bool:
        """Whether another instance still holds the encode lock (``False`` when the store fails)."""
        if self._paused():
            return False
        try:
            held = bool(self._client.exists(self._key("lock", image_id)))
        except redis.RedisError as exc:
            self._note(True, repr(exc))
            return False
        self._note(False)
        return held

    def unlock(self, image_id: str, token: str) -> None:
        """Release our encode lock (left to expire when the store fails)."""
        try:
            self._client.eval(_RELEASE, 1, self._key("lock", image_id), token)
        except redis.RedisError as exc:
            self._note(True, repr(exc))

    def stats(self) -> dict[str, object]:
        """The counters, the state (``available``) and the settings, for ``/stats``."""
        with self._lock:
            counters = asdict(self.counters)
            failing = self._failing
        settings = {k: v for k, v in asdict(self.settings).items() if k != "url"}
        return {"available": not failing, **counters, **settings}
