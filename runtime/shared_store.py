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
import urllib.parse
import uuid
from dataclasses import MISSING, asdict, dataclass
from typing import Literal

import redis

from runtime.env_values import env_field, non_negative_int, positive
from runtime.shared_entry import EMBEDDING_BYTES, SharedEntry, read_entry, write_entry

_LOG = logging.getLogger(__name__)

#: What one lookup found: an entry, no entry, or a store that failed or lied.
Outcome = Literal["hit", "miss", "error"]
#: Deletes the lock only if it still holds our token (another instance may hold it by now).
_COUNTER_OF: dict[Outcome, str] = {"hit": "hits", "miss": "misses", "error": "errors"}
_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


#: The URL schemes a Redis-protocol store is reached by: plain TCP, or TLS (ElastiCache in-transit encryption).
URL_SCHEMES = ("redis", "rediss")


def parse_store_url(text: str) -> str:
    """A ``redis://`` or ``rediss://`` URL with a host and no password in it."""
    url = text.strip()
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in URL_SCHEMES or not parts.hostname:
        raise ValueError("expected redis://HOST:PORT or rediss://HOST:PORT (TLS)")
    if parts.password is not None:
        raise ValueError("the URL must not carry a password: put it in SAM_SHARED_CACHE_PASSWORD_FILE or a Secrets "
                         "Manager secret named by SAM_SHARED_CACHE_SECRET_ID")
    return url


@dataclass(frozen=True)
class SharedStoreSettings:
    """``url``: ``redis://`` or ``rediss://`` (TLS), no password in it; timeouts in milliseconds;
    ``ttl_s``: seconds an entry lives; the encode lock lives ``lock_ttl_ms`` and a waiter waits at
    most ``lock_wait_ms`` before encoding anyway; ``retry_after_ms``: pause after a failure."""

    url: str = env_field(MISSING, "SAM_SHARED_CACHE_URL", parse_store_url,
                         shown="none (no shared tier)",
                         doc="the shared embedding tier behind the in-process cache: `redis://HOST:PORT/DB` or "
                             "`rediss://` (TLS) of a Valkey/Redis server (Amazon ElastiCache); no password in the URL "
                             "(see \"Several instances\")")
    connect_timeout_ms: int = env_field(50, "SAM_SHARED_CACHE_CONNECT_TIMEOUT_MS", positive(int),
                                        doc="the store's connection timeout; a store slower than that is a miss")
    command_timeout_ms: int = env_field(200, "SAM_SHARED_CACHE_COMMAND_TIMEOUT_MS", positive(int),
                                        doc="the store's command timeout; a store slower than that is a miss")
    ttl_s: int = env_field(3600, "SAM_SHARED_CACHE_TTL_S", positive(int), doc="how long a stored embedding lives")
    lock_ttl_ms: int = env_field(30_000, "SAM_SHARED_CACHE_LOCK_TTL_MS", positive(int),
                                 doc="the encode lock's lifetime (two instances given the same new photo at once "
                                     "encode it once)")
    lock_wait_ms: int = env_field(10_000, "SAM_SHARED_CACHE_LOCK_WAIT_MS", non_negative_int,
                                  doc="how long an instance waits for another's encode lock before encoding anyway")
    retry_after_ms: int = env_field(1000, "SAM_SHARED_CACHE_RETRY_AFTER_MS", non_negative_int,
                                    doc="after a store failure, lookups skip the store this long (a stalled store "
                                        "costs one timeout per period, not one per request)")


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
        entry = read_entry(self._identity, value, self._embedding_bytes) if isinstance(value, bytes) else None
        if entry is None:
            _LOG.warning("shared cache: the value under image %s is not a valid entry of this model; ignored", image_id)
            return None, self._count("error")
        return entry, self._count("hit")

    def put(self, image_id: str, entry: SharedEntry) -> bool:
        """Store ``entry`` with the TTL; ``False`` when the store failed."""
        if self._paused():
            return False
        try:
            self._client.set(self._key("emb", image_id), write_entry(self._identity, entry),
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
