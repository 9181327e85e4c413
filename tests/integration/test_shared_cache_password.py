"""The shared tier's password: from a file, or from AWS Secrets Manager (a real moto_server),
against a real redis-server that requires it; a wrong or unreadable one leaves the tier off or
failing, never the server."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from runtime.settings import RuntimeSettings
from runtime.shared_config import SharedCacheConfig, SharedCacheUnavailable, read_password
from runtime.shared_entry import SharedEntry, model_identity
from runtime.shared_store import SharedStore, SharedStoreSettings
from synthetic.test_images import synthetic_image
from tests.integration.rehearsal_stack import CREDENTIALS, wait_http
from tests.integration.server import free_port, start_server
from tests.redis_server import redis_server
from tests.reference import encode

_EMB = 16 * 4
_ENTRY = SharedEntry(bytes(_EMB), (4, 4), (4, 4), b"photo")
_ID = model_identity("a" * 64, "b" * 64)


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def _secrets(moto_url: str):  # type: ignore[no-untyped-def]
    return boto3.client("secretsmanager", endpoint_url=moto_url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def _shared(url: str) -> dict[str, Any]:
    return httpx.get(url + "/stats", timeout=10).json()["shared_cache"]  # type: ignore[no-any-return]


def test_password_from_a_secret_string_or_its_json(moto_url: str) -> None:
    client = _secrets(moto_url)
    client.create_secret(Name="plain", SecretString="s3cret-token")
    client.create_secret(Name="doc", SecretString=json.dumps({"password": "from-json", "user": "x"}))
    client.create_secret(Name="nopass", SecretString=json.dumps({"user": "x"}))
    store = SharedStoreSettings("redis://127.0.0.1:1")
    assert read_password(SharedCacheConfig(store, secret_id="plain"), client) == "s3cret-token"
    assert read_password(SharedCacheConfig(store, secret_id="doc"), client) == "from-json"
    with pytest.raises(SharedCacheUnavailable, match="'password' field"):
        read_password(SharedCacheConfig(store, secret_id="nopass"), client)
    with pytest.raises(SharedCacheUnavailable, match="SAM_SHARED_CACHE_SECRET_ID=missing"):
        read_password(SharedCacheConfig(store, secret_id="missing"), client)


def test_password_file_opens_an_authenticated_store(tmp_path: Path) -> None:
    with redis_server(password="pw-123") as (_proc, url):
        (tmp_path / "pw").write_text("pw-123\n")
        config = RuntimeSettings.from_env({"SAM_SHARED_CACHE_URL": url,
                                           "SAM_SHARED_CACHE_PASSWORD_FILE": str(tmp_path / "pw")}).shared_cache
        assert config is not None
        store = SharedStore(config.store, _ID, _EMB, read_password(config))
        assert store.put("img", _ENTRY) and store.get("img") == (_ENTRY, "hit")
        wrong = SharedStore(config.store, _ID, _EMB, "wrong")
        assert wrong.get("img") == (None, "error") and not wrong.put("img", _ENTRY)
    with pytest.raises(SharedCacheUnavailable, match="SAM_SHARED_CACHE_PASSWORD_FILE"):
        read_password(SharedCacheConfig(config.store, password_file=tmp_path / "absent"))


def test_server_reads_its_password_from_secrets_manager(moto_url: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    _secrets(moto_url).create_secret(Name="sam/shared-cache", SecretString="pw-456")
    env = {**CREDENTIALS, "AWS_ENDPOINT_URL": moto_url, "SAM_SHARED_CACHE_SECRET_ID": "sam/shared-cache"}
    with redis_server(password="pw-456") as (_proc, url):
        server = start_server(tiny_model_dir, tmp_path / "s.log", {**env, "SAM_SHARED_CACHE_URL": url})
        try:
            photo = encode(synthetic_image((240, 320), seed=61), "JPEG", quality=90)
            body = {"image_base64": base64.b64encode(photo).decode(), "points": [{"x": 50, "y": 60}]}
            assert httpx.post(server.url + "/invocations", json=body, timeout=60).status_code == 200
            end = time.monotonic() + 30
            while time.monotonic() < end and _shared(server.url)["writes"] < 1:
                time.sleep(0.02)
            shared = _shared(server.url)
            assert shared["enabled"] and shared["available"] and shared["writes"] == 1  # AUTH with the secret worked
        finally:
            server.stop()
        lost = start_server(tiny_model_dir, tmp_path / "t.log",
                            {**env, "SAM_SHARED_CACHE_URL": url, "SAM_SHARED_CACHE_SECRET_ID": "no/such/secret"})
        try:  # the secret cannot be read: the server runs without the tier and says why
            shared = _shared(lost.url)
            assert not shared["enabled"] and "no/such/secret" in shared["reason"]
        finally:
            lost.stop()
