"""What backup work needs from Secrets: a store's credentials and CA bundle, a backup's key.

Backups (``runtime.backups``) and keyspace analyses (``runtime.analyses``) reach the same stores
with the same Secrets, read here at the moment of the run (RBAC: ``get`` on Secrets, never
``list`` or ``watch``). The values go into the backup library's ``StoreSettings`` and nowhere
else: a CA bundle into a private temporary file for boto3, removed afterwards; credentials into
memory only, and every message that leaves a run passes the store's ``redact``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from etcd_operator.api.backup import BackupSpec, BackupStore
from etcd_operator.backup import Credentials, StoreSettings, parse_key
from etcd_operator.runtime.kube import KubeApi

CREDENTIAL_KEYS = ("accessKeyId", "secretAccessKey", "sessionToken")


class SecretError(Exception):
    """A Secret a backup needs is missing or incomplete; the message says which and what."""


def decode(secret: Mapping[str, Any], key: str) -> str | None:
    """The text under ``key`` of a Secret (``data``, base64; or ``stringData``)."""
    value = (secret.get("data") or {}).get(key)
    if value is None:
        plain = (secret.get("stringData") or {}).get(key)
        return str(plain) if plain is not None else None
    try:
        return base64.b64decode(str(value), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


async def read_secret(kube: KubeApi, namespace: str, name: str, why: str) -> dict[str, Any]:
    secret = await kube.get("v1", "Secret", namespace, name)
    if secret is None:
        raise SecretError(f"Secret {name} ({why}) does not exist in namespace {namespace}")
    return secret


@contextlib.asynccontextmanager
async def resolved(
    kube: KubeApi, namespace: str, store: BackupStore, default_prefix: str
) -> AsyncIterator[StoreSettings]:
    """The store with its Secrets read: credentials in memory, a CA bundle in a private
    temporary file for boto3 (removed afterwards)."""
    credentials = None
    if store.credentialsSecret:
        secret = await read_secret(kube, namespace, store.credentialsSecret, "S3 credentials")
        values = {k: decode(secret, k) for k in CREDENTIAL_KEYS}
        missing = [k for k in CREDENTIAL_KEYS[:2] if not values[k]]
        if missing:
            raise SecretError(
                f"Secret {store.credentialsSecret} (S3 credentials) has no "
                f"{' and no '.join(missing)}: it needs accessKeyId and secretAccessKey"
            )
        credentials = Credentials(
            str(values["accessKeyId"]), str(values["secretAccessKey"]), values["sessionToken"]
        )
    async with contextlib.AsyncExitStack() as stack:
        ca_path = None
        if store.caBundle is not None:
            ref = store.caBundle
            secret = await read_secret(kube, namespace, ref.name, "S3 CA bundle")
            pem = decode(secret, ref.key)
            if not pem:
                raise SecretError(f"Secret {ref.name} (S3 CA bundle) has no key {ref.key}")
            ca_path = stack.enter_context(private_file(pem))
        yield StoreSettings.from_api(
            store, default_prefix=default_prefix, credentials=credentials, ca_bundle=ca_path
        )


async def encryption_key(kube: KubeApi, namespace: str, spec: BackupSpec | None) -> bytes | None:
    """The key of ``spec.backup.encryption`` (32 bytes), or ``None`` without encryption."""
    if spec is None or spec.encryption is None:
        return None
    ref = spec.encryption.keySecret
    secret = await read_secret(kube, namespace, ref.name, "backup encryption key")
    value = (secret.get("data") or {}).get(ref.key)
    if value is None:
        raise SecretError(f"Secret {ref.name} (backup encryption key) has no key {ref.key}")
    return parse_key(base64.b64decode(str(value)))


@contextlib.contextmanager
def private_file(text: str) -> Iterator[str]:
    """``text`` in a file only this process's user can read; its path, removed afterwards."""
    fd, path = tempfile.mkstemp(prefix="etcd-backup-", suffix=".pem")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        yield path
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
