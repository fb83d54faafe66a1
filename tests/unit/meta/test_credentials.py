"""A connection's credentials come from its files, looked at no more than once a second."""

import os
import time

import pytest

from consumer.events.records import ConnectionStatus, MetaConnection
from consumer.meta.credentials import CredentialStore, MissingCredentialsError


def _connection(app_secret_file: str | None) -> MetaConnection:
    return MetaConnection("conn-1", "ws-1", ConnectionStatus.ACTIVE, "token", app_secret_file)


def test_a_rotated_file_is_read_again_once_the_second_has_passed(tmp_path, monkeypatch):
    now = {"s": 100.0}
    monkeypatch.setattr(time, "monotonic", lambda: now["s"])
    (tmp_path / "token").write_text("token-1\n")
    (tmp_path / "secret").write_text("secret-1")
    store = CredentialStore(tmp_path)
    first = store.for_connection(_connection("secret"))
    assert first.app_secret is not None
    assert (first.access_token.reveal(), first.app_secret.reveal()) == ("token-1", "secret-1")
    (tmp_path / "token").write_text("token-2, longer")
    now["s"] += 0.5
    assert store.for_connection(_connection("secret")) is first  # within the second: not looked at
    now["s"] += 0.6
    second = store.for_connection(_connection("secret"))
    assert second.access_token.reveal() == "token-2, longer"
    assert second.app_secret is not None
    assert second.app_secret.reveal() == "secret-1"


def test_unchanged_files_give_the_same_credentials_and_so_the_same_batch_key(tmp_path, monkeypatch):
    from consumer.meta.batching import BatchKey

    now = {"s": 100.0}
    monkeypatch.setattr(time, "monotonic", lambda: now["s"])
    (tmp_path / "token").write_text("token-1")
    store = CredentialStore(tmp_path)
    first = store.for_connection(_connection(None))
    now["s"] += 1.1
    (tmp_path / "token").write_text("token-1")  # written again, the same secret
    again = store.for_connection(_connection(None))
    assert again is first
    assert BatchKey("ds-1", again, None) == BatchKey("ds-1", first, None)
    now["s"] += 1.1
    (tmp_path / "token").write_text("token-2")
    rotated = store.for_connection(_connection(None))
    assert rotated is not first and not rotated.same_as(first)
    assert BatchKey("ds-1", rotated, None) != BatchKey("ds-1", first, None)


def test_a_missing_file_is_an_error_each_time_until_it_is_there(tmp_path):
    store = CredentialStore(tmp_path)
    with pytest.raises(MissingCredentialsError, match="access token file 'token' not found"):
        store.for_connection(_connection(None))
    (tmp_path / "token").write_text("token-1")
    os.chmod(tmp_path / "token", 0o600)
    assert store.for_connection(_connection(None)).app_secret is None
