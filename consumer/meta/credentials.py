"""Access tokens and app secrets read from files under `CAPI_CREDENTIALS_DIR`.

A connection names its files (`credential_ref`, `app_secret_ref`). Files are re-read when they
change (their modification time or size, looked at no more than once a second), so a rotated
secret is picked up without a restart.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from consumer.events.records import MetaConnection
from consumer.meta.client import Credentials
from consumer.settings import Secret

__all__ = ["CredentialStore", "MissingCredentialsError"]

_RECHECK_S = 1.0


class MissingCredentialsError(LookupError):
    """A credential file is missing, unreadable, empty or not a plain file name."""


class CredentialStore:
    """Access tokens and app secrets read from files named by a connection, re-read when a
    file changes."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._cache: dict[str, tuple[int, int, Secret]] = {}  # ref -> its file's mtime, size, value
        self._lock = threading.Lock()
        # a connection's two references -> when their files were last looked at, and the
        # credentials they gave
        self._by_refs: dict[tuple[str, str | None], tuple[float, Credentials]] = {}

    def for_connection(self, connection: MetaConnection) -> Credentials:
        """The connection's credentials; asked for every event, so the pair is kept as long
        as its files are (looked at no more than once a second)."""
        refs = (connection.credential_ref, connection.app_secret_ref)
        now = time.monotonic()
        kept = self._by_refs.get(refs)
        if kept is not None and now - kept[0] < _RECHECK_S:
            return kept[1]
        credentials = self._credentials(connection)
        if kept is not None and kept[1].same_as(credentials):
            credentials = kept[1]  # unchanged: the same object, and so the same batch key
        self._by_refs[refs] = (now, credentials)
        return credentials

    def _credentials(self, connection: MetaConnection) -> Credentials:
        token = self._read(connection.credential_ref, "access token")
        secret = (
            self._read(connection.app_secret_ref, "app secret")
            if connection.app_secret_ref
            else None
        )
        return Credentials(token, secret)

    def _read(self, ref: str, what: str) -> Secret:
        if not ref or ref in (".", "..") or "/" in ref or "\\" in ref or "\0" in ref:
            raise MissingCredentialsError(f"{what} reference {ref!r} is not a plain file name")
        path = self._dir / ref
        try:
            stat = path.stat()
        except OSError:
            raise MissingCredentialsError(f"{what} file {ref!r} not found") from None
        with self._lock:
            cached = self._cache.get(ref)
        if cached is not None and cached[:2] == (stat.st_mtime_ns, stat.st_size):
            return cached[2]
        try:
            value = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            raise MissingCredentialsError(f"{what} file {ref!r} is not readable") from None
        if not value:
            raise MissingCredentialsError(f"{what} file {ref!r} is empty")
        secret = Secret(value)
        with self._lock:
            self._cache[ref] = (stat.st_mtime_ns, stat.st_size, secret)
        return secret
