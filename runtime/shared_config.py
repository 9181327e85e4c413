"""Where the shared embedding tier is and how to authenticate: the URL and the password's source.

The password (Redis AUTH password or ElastiCache user's token) never travels in an environment
variable: it is read at start-up from a file (``SAM_SHARED_CACHE_PASSWORD_FILE``, for local and
non-AWS use) or from AWS Secrets Manager (``SAM_SHARED_CACHE_SECRET_ID``: the secret's
``SecretString``, either the password itself or a JSON object with a ``password`` field; the
execution role needs ``secretsmanager:GetSecretValue`` on it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.env_values import env_field
from runtime.shared_store import SharedStoreSettings


class SharedCacheUnavailable(Exception):
    """The tier's password cannot be read: the server runs without the tier, saying why."""


@dataclass(frozen=True)
class SharedCacheConfig:
    """The store's settings plus where its password comes from (at most one of the two)."""

    store: SharedStoreSettings
    secret_id: str | None = env_field(
        None, "SAM_SHARED_CACHE_SECRET_ID", str.strip,
        doc="an AWS Secrets Manager secret holding the store's AUTH password (or ElastiCache user's token), read at "
            "start-up: the string, or JSON with a `password` field; not with `SAM_SHARED_CACHE_PASSWORD_FILE`")
    password_file: Path | None = env_field(
        None, "SAM_SHARED_CACHE_PASSWORD_FILE", Path,
        doc="a file holding the store's AUTH password, read at start-up; not with `SAM_SHARED_CACHE_SECRET_ID`")


def read_password(config: SharedCacheConfig, secrets_client: Any = None) -> str | None:
    """The store's password from the file or the secret, ``None`` without either.

    ``secrets_client``: a boto3 ``secretsmanager`` client (made here when not given).
    Raises ``SharedCacheUnavailable`` naming the source when it cannot be read.
    """
    if config.password_file is not None:
        try:
            return config.password_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise SharedCacheUnavailable(f"cannot read SAM_SHARED_CACHE_PASSWORD_FILE {config.password_file}: {exc}") \
                from exc
    if config.secret_id is None:
        return None
    return _secret_password(config.secret_id, secrets_client)


def _secret_password(secret_id: str, client: Any) -> str:
    """The password in Secrets Manager's ``secret_id``: the string itself or its JSON ``password``."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client = client or boto3.client("secretsmanager")
        secret = client.get_secret_value(SecretId=secret_id).get("SecretString")
    except (BotoCoreError, ClientError) as exc:
        raise SharedCacheUnavailable(f"cannot read the secret SAM_SHARED_CACHE_SECRET_ID={secret_id}: {exc}") from exc
    if not isinstance(secret, str) or not secret.strip():
        raise SharedCacheUnavailable(f"the secret {secret_id} has no SecretString (store the password as text)")
    try:
        document = json.loads(secret)
    except ValueError:
        return secret.strip()
    if isinstance(document, dict):
        password = document.get("password")
        if not isinstance(password, str) or not password:
            raise SharedCacheUnavailable(f"the secret {secret_id} is a JSON object without a string 'password' field")
        return password
    return secret.strip()
