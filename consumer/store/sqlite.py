"""Local state under `CAPI_STATE_DIR`: the reference tables and the offsets they applied.

One SQLite database (`tables.sqlite3`). Why SQLite: it is in the standard library, bounded in
memory whatever the number of keys (a fixed page cache), transactional (rows and the offsets
that produced them commit together, so a restart resumes exactly where it stopped), and with
`secure_delete` a deleted row's bytes are overwritten with zeros, so a contact erased by a
tombstone cannot be found in the file afterwards. The rollback journal (not WAL) keeps old page
images out of the store once a transaction ends.

Deleting the folder is always safe: the tables are rebuilt from their compacted topics.

A full volume is an operating condition, not a crash: a transaction that finds no room
(SQLite's SQLITE_FULL, from the file system or from `CAPI_STATE_MAX_BYTES`) is rolled back and
raises `StateFullError`; the store is then `full` until a transaction that adds rows commits
again. Its writers keep what they wanted to write and try again at most once a second
(`may_write`); flow control pauses the input meanwhile.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from consumer.errors import StateFullError

__all__ = ["KeyValue", "StateStore"]

log = logging.getLogger(__name__)

_SCHEMA_VERSION = 1
_RETRY_FULL_S = 1.0  # how often a writer tries again while the store is full


class KeyValue:
    """One table of the store: text keys, blob values, and how many keys it holds (counted
    once when opened, then kept by every change: no scan of the table while running)."""

    def __init__(self, store: StateStore, name: str) -> None:
        # table names are the service's own constants, checked here; values are bound, never
        # formatted into SQL
        if not re.fullmatch(r"[a-z][a-z_]*", name):
            raise ValueError(f"invalid table name {name!r}")
        self._store = store
        self._table = f"kv_{name}"
        self._get = f"SELECT v FROM {self._table} WHERE k = ?"
        self._insert = f"INSERT OR IGNORE INTO {self._table} (k, v) VALUES (?, ?)"
        self._update = f"UPDATE {self._table} SET v = ? WHERE k = ?"
        self._delete = f"DELETE FROM {self._table} WHERE k = ?"
        self._count = 0

    def create(self) -> None:
        self._store.db.execute(
            f"CREATE TABLE IF NOT EXISTS {self._table} (k TEXT PRIMARY KEY, v BLOB NOT NULL) "
            "WITHOUT ROWID"
        )
        self.recount()

    def get(self, key: str) -> bytes | None:
        row = self._store.db.execute(self._get, (key,)).fetchone()
        return None if row is None else bytes(row[0])

    def get_many(self, keys: list[str]) -> dict[str, bytes]:
        """The values of those of `keys` that exist, one query per 500 keys (a key looked up
        alone costs several times more)."""
        rows = _select_in(self._store.db, f"SELECT k, v FROM {self._table} WHERE k", keys)
        return {key: bytes(value) for key, value in rows}

    def put(self, key: str, value: bytes) -> None:
        """One statement for a new key (a bootstrap's case), two for a key that exists."""
        if self._store.db.execute(self._insert, (key, value)).rowcount:
            self._count += 1
        else:
            self._store.db.execute(self._update, (value, key))

    def delete(self, key: str) -> None:
        self._count -= self._store.db.execute(self._delete, (key,)).rowcount

    def count(self) -> int:
        return self._count

    def recount(self) -> None:
        """Count the keys (a scan): when opened, and after a transaction was rolled back."""
        row = self._store.db.execute(f"SELECT COUNT(*) FROM {self._table}").fetchone()
        self._count = int(row[0])

    def clear(self) -> None:
        self._store.db.execute(f"DELETE FROM {self._table}")
        self._count = 0


class StateStore:
    """The SQLite file; used from one thread at a time (the service's main loop)."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = directory / "tables.sqlite3"
        self._max_bytes = max_bytes
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        self.full_since: float | None = None  # when a write last found no room, while full
        self._failed_at = 0.0

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("state store is not open")
        return self._db

    def open(self) -> StateStore:
        """Open the file (`StateFullError` when the volume has no room even for that)."""
        _private(self.path)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            self._prepare(db)
        except sqlite3.Error as exc:
            db.close()
            if exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
                raise StateFullError(f"state store {self.path} is full ({exc})") from exc
            raise
        self._db = db
        return self

    def _prepare(self, db: sqlite3.Connection) -> None:
        db.execute("PRAGMA secure_delete = ON")
        db.execute("PRAGMA journal_mode = TRUNCATE")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA cache_size = -32768")  # 32 MiB of page cache, whatever the size
        db.execute("PRAGMA temp_store = MEMORY")
        if self._max_bytes:
            page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
            db.execute(f"PRAGMA max_page_count = {max(1, self._max_bytes // page_size)}")
        db.execute(
            "CREATE TABLE IF NOT EXISTS offsets (topic TEXT NOT NULL, partition INTEGER NOT NULL,"
            " next_offset INTEGER NOT NULL, PRIMARY KEY (topic, partition)) WITHOUT ROWID"
        )
        db.execute(
            "CREATE TABLE IF NOT EXISTS topics (topic TEXT PRIMARY KEY, topic_id TEXT NOT NULL)"
            " WITHOUT ROWID"
        )
        db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def table(self, name: str) -> KeyValue:
        kv = KeyValue(self, name)
        kv.create()
        return kv

    @property
    def full(self) -> bool:
        """A write found no room, and none that adds rows has committed since."""
        return self.full_since is not None

    def may_write(self) -> bool:
        """Whether a writer holding back rows because the store was full tries again now."""
        return self.full_since is None or self._clock() - self._failed_at >= _RETRY_FULL_S

    def used_bytes(self) -> int:
        """The bytes the database's pages hold (free pages left out): two header reads."""
        db = self.db
        pages = int(db.execute("PRAGMA page_count").fetchone()[0])
        free = int(db.execute("PRAGMA freelist_count").fetchone()[0])
        return (pages - free) * int(db.execute("PRAGMA page_size").fetchone()[0])

    @contextmanager
    def transaction(self, *, adds: bool = True) -> Iterator[None]:
        """One write transaction; `StateFullError` when it finds no room (rolled back).
        `adds`: it may need new pages, so its success says there is room again (a transaction
        that only deletes succeeds on a full volume too)."""
        with self._lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                yield
                db.execute("COMMIT")
            except BaseException as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error) and exc.sqlite_errorcode == sqlite3.SQLITE_FULL:
                    if self.full_since is None:
                        self.full_since = self._clock()
                        log.warning(
                            "state store full path=%s: input paused until there is room", self.path
                        )
                    self._failed_at = self._clock()
                    raise StateFullError(f"state store {self.path} is full ({exc})") from exc
                raise
            if adds and self.full_since is not None:
                log.info("state store has room again after %.0f s", self._clock() - self.full_since)
                self.full_since = None

    def rows_by_event_id(self, columns: str, table: str, event_ids: Iterable[str]) -> list[Any]:
        """`SELECT columns FROM table` for the rows of `event_ids`, one query per 500 ids."""
        where = f"SELECT {columns} FROM {table} WHERE event_id"
        return list(self.select_in(where, list(set(event_ids))))

    def select_in(self, select: str, values: list[Any]) -> Iterator[Any]:
        """The rows of `select` (ending in the column compared) `IN` the `values`, one query
        per 500 values."""
        return _select_in(self.db, select, values)

    def offsets(self, topic: str) -> dict[int, int]:
        rows = self.db.execute(
            "SELECT partition, next_offset FROM offsets WHERE topic = ?", (topic,)
        ).fetchall()
        return {int(p): int(o) for p, o in rows}

    def save_offset(self, topic: str, partition: int, next_offset: int) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO offsets (topic, partition, next_offset) VALUES (?, ?, ?)",
            (topic, partition, next_offset),
        )

    def forget_offsets(self, topic: str, partitions: Iterable[int]) -> None:
        """Forget how far these partitions of `topic` were read (they are read from their
        start next time); the caller clears what it built from them, in the same
        transaction."""
        self.db.executemany(
            "DELETE FROM offsets WHERE topic = ? AND partition = ?",
            [(topic, p) for p in partitions],
        )

    def topic_id(self, topic: str) -> str | None:
        row = self.db.execute("SELECT topic_id FROM topics WHERE topic = ?", (topic,)).fetchone()
        return None if row is None else str(row[0])

    def reset_topic(self, topic: str, topic_id: str) -> None:
        """Forget how far a topic was read, and note its id (the topic is new, or the state fell
        behind it); the caller clears what it built from the topic, in the same transaction."""
        self.db.execute("DELETE FROM offsets WHERE topic = ?", (topic,))
        self.db.execute(
            "INSERT OR REPLACE INTO topics (topic, topic_id) VALUES (?, ?)", (topic, topic_id)
        )


def _private(path: Path) -> None:
    """The state holds contact data: its folder 0700, its file 0600 (SQLite gives its journal
    the file's mode)."""
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    for target, mode in ((folder, 0o700), (path, 0o600)):
        try:
            os.chmod(target, mode)
        except PermissionError:  # a folder another user owns (a mounted volume): leave it
            log.warning("cannot restrict the permissions of %s to %o", target, mode)


def _select_in(db: sqlite3.Connection, select: str, values: list[Any]) -> Iterator[Any]:
    """The rows of `select` (ending in the column compared) `IN` the `values`, one query per
    500 values: one query for many keys costs a fraction of one per key."""
    for start in range(0, len(values), 500):
        chunk = values[start : start + 500]
        yield from db.execute(f"{select} IN ({','.join('?' * len(chunk))})", chunk)
