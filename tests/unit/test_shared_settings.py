"""SAM_SHARED_CACHE_* settings and the tier's EMF metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.settings import RuntimeSettings
from runtime.shared_store import SharedStoreSettings
from serving.metrics import emf_record


def test_unset_url_means_no_tier_and_defaults_come_from_the_store_settings() -> None:
    assert RuntimeSettings.from_env({}).shared_cache is None
    config = RuntimeSettings.from_env({"SAM_SHARED_CACHE_URL": "rediss://cache.example:6379/0",
                                       "SAM_SHARED_CACHE_SECRET_ID": "sam/cache",
                                       "SAM_SHARED_CACHE_COMMAND_TIMEOUT_MS": "150"}).shared_cache
    assert config is not None
    assert config.store == SharedStoreSettings("rediss://cache.example:6379/0", command_timeout_ms=150)
    assert config.secret_id == "sam/cache" and config.password_file is None


@pytest.mark.parametrize(("env", "named"), [
    ({"SAM_SHARED_CACHE_URL": "redis://:pw@host:6379"}, "must not carry a password"),
    ({"SAM_SHARED_CACHE_URL": "http://host:6379"}, "SAM_SHARED_CACHE_URL"),
    ({"SAM_SHARED_CACHE_URL": "redis://"}, "SAM_SHARED_CACHE_URL"),
    ({"SAM_SHARED_CACHE_SECRET_ID": "x"}, "need SAM_SHARED_CACHE_URL"),
    ({"SAM_SHARED_CACHE_URL": "redis://h", "SAM_SHARED_CACHE_SECRET_ID": "x",
      "SAM_SHARED_CACHE_PASSWORD_FILE": "/p"}, "not both"),
    ({"SAM_SHARED_CACHE_URL": "redis://h", "SAM_SHARED_CACHE_TTL_S": "0"}, "SAM_SHARED_CACHE_TTL_S"),
])
def test_bad_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        RuntimeSettings.from_env(env)


def test_password_file_setting_is_a_path() -> None:
    config = RuntimeSettings.from_env({"SAM_SHARED_CACHE_URL": "redis://h:1",
                                       "SAM_SHARED_CACHE_PASSWORD_FILE": "/run/secrets/cache"}).shared_cache
    assert config is not None and config.password_file == Path("/run/secrets/cache")


@pytest.mark.parametrize(("outcome", "counts"), [("hit", (1, 0, 0)), ("miss", (0, 1, 0)), ("error", (0, 0, 1))])
def test_emf_counts_the_shared_lookup(outcome: str, counts: tuple[int, int, int]) -> None:
    record = emf_record("NS", "ep", {"shared_cache": outcome}, 1.0, 200, timestamp_ms=0)
    assert (record["SharedCacheHits"], record["SharedCacheMisses"], record["SharedCacheErrors"]) == counts
    names = {m["Name"] for m in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert {"SharedCacheHits", "SharedCacheMisses", "SharedCacheErrors"} <= names
    assert "SharedCacheHits" not in emf_record("NS", "ep", {}, 1.0, 200, timestamp_ms=0)
