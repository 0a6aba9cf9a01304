"""Human codes in SQLite (WAL): every choice a coder makes, committed before the page moves on.

One row per (coder, text, variable) holds the code; one row per (coder, text) holds the note,
the `unsure` mark and whether the text is done or skipped. The coders' tokens and the
sample's assignment settings are kept too, so a restarted server keeps every URL working.
A lock serialises this process's writes; SQLite's own locking covers other processes (an
export while the server runs).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._exceptions import DataError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS coders (
    name TEXT PRIMARY KEY, token TEXT NOT NULL, position INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS codes (
    coder TEXT NOT NULL, item TEXT NOT NULL, variable TEXT NOT NULL,
    value TEXT NOT NULL, updated TEXT NOT NULL,
    PRIMARY KEY (coder, item, variable)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS items (
    coder TEXT NOT NULL, item TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT '', unsure INTEGER NOT NULL DEFAULT 0,
    note TEXT NOT NULL DEFAULT '', updated TEXT NOT NULL,
    PRIMARY KEY (coder, item)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS resolved (
    item TEXT NOT NULL, variable TEXT NOT NULL, value TEXT NOT NULL, updated TEXT NOT NULL,
    PRIMARY KEY (item, variable)
) WITHOUT ROWID;
"""

_NEW_REVISION = (  # after every change, so what is computed on the codes is redone
    "INSERT INTO meta VALUES ('revision', '1') ON CONFLICT(key) "
    "DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)"
)
DONE = "done"
SKIPPED = "skipped"
TOKEN_BYTES = 32  # secrets.token_urlsafe: 43 characters
TABLES = frozenset({"meta", "coders", "codes", "items", "resolved"})
COMPANIONS = ("-wal", "-shm", "-journal")  # SQLite's files beside the store
OWNER_ONLY = 0o600


def new_token() -> str:
    """A long random token for a coder's or the admin's URL."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def default_store_path(sample: str | Path) -> Path:
    """`SAMPLE.annotate.sqlite` beside the sample."""
    p = Path(sample)
    return p.with_name(p.name + ".annotate.sqlite")


def create_private(path: Path) -> None:
    """Create the store readable by its owner only, if it is not there; SQLite gives the
    `-wal` and `-shm` it creates beside it the store's own mode."""
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, OWNER_ONLY))
    except FileExistsError:
        pass
    except OSError as exc:
        raise DataError(f"{path}: cannot create the store: {exc.strerror}") from None


def tighten(path: Path) -> None:
    """Make an existing store and SQLite's files beside it readable by their owner only."""
    for name in (path, *(path.with_name(path.name + s) for s in COMPANIONS)):
        try:
            if name.stat().st_mode & 0o077:
                os.chmod(name, OWNER_ONLY)
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise DataError(f"{name}: cannot make it readable by its owner only: {exc}") from None


def _tables(db: sqlite3.Connection) -> set[str]:
    rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {str(r[0]) for r in rows}


@dataclass(frozen=True)
class ItemState:
    """What one coder has recorded for one text beside the codes."""

    status: str = ""
    unsure: bool = False
    note: str = ""


@dataclass(frozen=True)
class Save:
    """One POST of the coder's page: codes by variable, and the text's note and marks."""

    codes: Mapping[str, str]
    note: str | None = None
    unsure: bool | None = None
    status: str | None = None  # None keeps the text's status as it is


class HumanStore:
    """The annotation store of one sample."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise DataError(f"{self.path}: the folder {self.path.parent} does not exist")
        create_private(self.path)  # it holds the coders' tokens
        try:
            self._db = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            foreign = _tables(self._db) - TABLES
            if foreign:  # another program's file: leave it as it is
                self._db.close()
                raise DataError(
                    f"{self.path}: not an annotation store (it holds the tables "
                    f"{', '.join(sorted(foreign))}); give --store a new file"
                )
            tighten(self.path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{self.path}: not an annotation store: {exc}") from None
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, committed before returning."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # -- settings and tokens -------------------------------------------------------------

    def meta(self, key: str) -> Any:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return json.loads(rows[0][0]) if rows else None

    def set_meta(self, key: str, value: Any) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO meta VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, json.dumps(value)),
            )

    def ensure_tokens(self, coders: list[str]) -> dict[str, str]:
        """Every coder's token (new coders get one) and the admin's, under the key ''."""
        with self._write() as db:
            known = dict(db.execute("SELECT name, token FROM coders").fetchall())
            start = len(known)
            for i, name in enumerate(c for c in coders if c not in known):
                token = new_token()
                db.execute("INSERT INTO coders VALUES (?, ?, ?)", (name, token, start + i))
                known[name] = token
            row = db.execute("SELECT value FROM meta WHERE key = 'admin_token'").fetchone()
            if row is None:
                admin = new_token()
                db.execute("INSERT INTO meta VALUES ('admin_token', ?)", (json.dumps(admin),))
            else:
                admin = json.loads(row[0])
        return {**{c: known[c] for c in coders}, "": admin}

    def coders(self) -> list[str]:
        """Every coder the store knows, in the order they were first added."""
        return [r[0] for r in self._read("SELECT name FROM coders ORDER BY position")]

    # -- codes ---------------------------------------------------------------------------

    def save(self, coder: str, item: str, save: Save) -> None:
        """Commit one POST's codes and marks in one transaction."""
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        with self._write() as db:
            for variable, value in save.codes.items():
                db.execute(
                    "INSERT INTO codes VALUES (?, ?, ?, ?, ?) ON CONFLICT(coder, item, variable) "
                    "DO UPDATE SET value = excluded.value, updated = excluded.updated",
                    (coder, item, variable, value, now),
                )
            db.execute(
                "INSERT INTO items (coder, item, updated) VALUES (?, ?, ?) "
                "ON CONFLICT(coder, item) DO UPDATE SET updated = excluded.updated",
                (coder, item, now),
            )
            db.execute(_NEW_REVISION)
            marks: tuple[tuple[str, str | int | None], ...] = (
                ("status", save.status),
                ("note", save.note),
                ("unsure", None if save.unsure is None else int(save.unsure)),
            )
            for column, mark in marks:
                if mark is not None:
                    db.execute(
                        f"UPDATE items SET {column} = ? WHERE coder = ? AND item = ?",
                        (mark, coder, item),
                    )

    def resolve(self, item: str, variable: str, value: str) -> None:
        """Keep the admin's code for a text the coders tied on ('' takes it back)."""
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        with self._write() as db:
            if value:
                db.execute(
                    "INSERT INTO resolved VALUES (?, ?, ?, ?) ON CONFLICT(item, variable) "
                    "DO UPDATE SET value = excluded.value, updated = excluded.updated",
                    (item, variable, value, now),
                )
            else:
                db.execute("DELETE FROM resolved WHERE item = ? AND variable = ?", (item, variable))
            db.execute(_NEW_REVISION)

    def resolutions(self) -> dict[str, dict[str, str]]:
        """The admin's codes for tied texts: variable -> text -> code."""
        out: dict[str, dict[str, str]] = {}
        for item, variable, value in self._read("SELECT item, variable, value FROM resolved"):
            out.setdefault(str(variable), {})[str(item)] = str(value)
        return out

    def codes_of(self, coder: str, item: str) -> dict[str, str]:
        """One coder's codes for one text, by variable."""
        rows = self._read(
            "SELECT variable, value FROM codes WHERE coder = ? AND item = ?", (coder, item)
        )
        return {str(var): str(value) for var, value in rows}

    def state_of(self, coder: str, item: str) -> ItemState:
        rows = self._read(
            "SELECT status, unsure, note FROM items WHERE coder = ? AND item = ?", (coder, item)
        )
        if not rows:
            return ItemState()
        status, unsure, note = rows[0]
        return ItemState(status=status, unsure=bool(unsure), note=note)

    def statuses(self, coder: str) -> dict[str, str]:
        """Each text's status for one coder (texts never touched are absent)."""
        rows = self._read("SELECT item, status FROM items WHERE coder = ?", (coder,))
        return {str(item): str(status) for item, status in rows}

    def all_codes(self) -> dict[str, dict[str, dict[str, str]]]:
        """Every code: variable -> coder -> text -> value."""
        out: dict[str, dict[str, dict[str, str]]] = {}
        for coder, item, variable, value in self._read(
            "SELECT coder, item, variable, value FROM codes"
        ):
            out.setdefault(variable, {}).setdefault(coder, {})[item] = value
        return out

    def all_states(self) -> dict[str, dict[str, ItemState]]:
        """Every coder's marks: coder -> text -> state."""
        out: dict[str, dict[str, ItemState]] = {}
        for coder, item, status, unsure, note in self._read(
            "SELECT coder, item, status, unsure, note FROM items"
        ):
            out.setdefault(coder, {})[item] = ItemState(status, bool(unsure), note)
        return out

    def version(self) -> str:
        """Changes whenever a code or a mark is saved (for caching what is computed on them)."""
        rows = self._read("SELECT value FROM meta WHERE key = 'revision'")
        return str(rows[0][0]) if rows else "0"
