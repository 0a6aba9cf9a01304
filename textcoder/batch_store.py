"""The Batch API's bookkeeping, in the run's own SQLite store, so nothing is paid twice.

Beside `store.py`'s answers, four tables in the same file (WAL):

- `batch_files`: every uploaded input file, with the run that made it and, once created, its batch;
- `batch_requests`: which requests (custom_id) each file holds and which (row id, store key)
  each serves, written before the batch is created;
- `batches`: each batch as last seen (status, request counts, output and error files, times);
- `batch_answers`: every answer read from an output or error file, committed as it is read.

A run that dies anywhere leaves enough here for the same command to re-attach: a file with no
batch is matched to the server's batches by its input file id before a new batch is made.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._exceptions import DataError

#: statuses after which a batch changes no more
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batch_files (
    file_id TEXT PRIMARY KEY,
    run TEXT NOT NULL,
    model TEXT NOT NULL,
    base_url TEXT NOT NULL,
    requests INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    batch_id TEXT,
    uploaded TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batch_requests (
    custom_id TEXT NOT NULL,
    file_id TEXT NOT NULL,
    row_id TEXT NOT NULL,
    store_key TEXT NOT NULL,
    PRIMARY KEY (custom_id, file_id, row_id, store_key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS batch_requests_file ON batch_requests (file_id);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    input_file_id TEXT NOT NULL,
    run TEXT NOT NULL,
    base_url TEXT NOT NULL,
    status TEXT NOT NULL,
    total INTEGER NOT NULL DEFAULT 0,
    completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    output_file_id TEXT,
    error_file_id TEXT,
    created_at INTEGER,
    expires_at INTEGER,
    collected INTEGER NOT NULL DEFAULT 0,
    errors TEXT
);
CREATE TABLE IF NOT EXISTS batch_answers (
    custom_id TEXT PRIMARY KEY,
    batch_id TEXT NOT NULL,
    ok INTEGER NOT NULL,
    body TEXT,
    error TEXT,
    read TEXT NOT NULL
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class BatchRecord:
    """One batch as the store last saw it."""

    batch_id: str
    input_file_id: str
    run: str
    base_url: str
    status: str
    total: int
    completed: int
    failed: int
    output_file_id: str | None
    error_file_id: str | None
    created_at: int | None
    expires_at: int | None
    collected: bool
    errors: str | None = None

    @property
    def done(self) -> bool:
        """Whether the batch will change no more (its files can be read)."""
        return self.status in TERMINAL

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch_id": self.batch_id,
            "input_file_id": self.input_file_id,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "status": self.status,
            "request_counts": {
                "total": self.total,
                "completed": self.completed,
                "failed": self.failed,
            },
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "collected": self.collected,
        }


@dataclass(frozen=True)
class StoredAnswer:
    """One request's answer from a batch: the completion's JSON, or why there is none."""

    custom_id: str
    batch_id: str
    ok: bool
    body: dict[str, Any] | None
    error: str | None


_BATCH_COLUMNS = (
    "batch_id, input_file_id, run, base_url, status, total, completed, failed,"
    " output_file_id, error_file_id, created_at, expires_at, collected, errors"
)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class BatchStore:
    """The batch tables of a store file (sharing its connection when given one)."""

    def __init__(self, db: sqlite3.Connection | str | Path) -> None:
        if isinstance(db, sqlite3.Connection):
            self.db = db
            self._own = False
        else:
            if not Path(db).is_file():
                raise DataError(f"{db}: no such store")
            try:
                self.db = sqlite3.connect(str(db), timeout=30.0)
                self.db.execute("PRAGMA journal_mode=WAL")
            except sqlite3.DatabaseError as exc:
                raise DataError(f"{db}: not a textcoder store: {exc}") from None
            self._own = True
        try:
            self.db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{db}: not a textcoder store: {exc}") from None

    # files and their requests -----------------------------------------------------------------

    def add_file(
        self,
        file_id: str,
        *,
        run: str,
        model: str,
        base_url: str,
        requests: Iterable[tuple[str, str, str]],
        n_requests: int,
        n_bytes: int,
    ) -> None:
        """Record an uploaded file and the (custom_id, row id, store key) it serves, at once."""
        with self.db:
            self.db.execute(
                "INSERT INTO batch_files (file_id, run, model, base_url, requests, bytes,"
                " uploaded) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (file_id, run, model, base_url, n_requests, n_bytes, _now()),
            )
            self.db.executemany(
                "INSERT OR IGNORE INTO batch_requests (custom_id, file_id, row_id, store_key)"
                " VALUES (?, ?, ?, ?)",
                ((cid, file_id, row, key) for cid, row, key in requests),
            )

    def files_without_batch(self) -> list[tuple[str, str]]:
        """(file id, base URL) of uploaded files whose batch was never recorded."""
        rows = self.db.execute(
            "SELECT file_id, base_url FROM batch_files WHERE batch_id IS NULL ORDER BY uploaded"
        ).fetchall()
        return [(str(f), str(u)) for f, u in rows]

    def keys_of(self, batch_id: str) -> list[tuple[str, str, str]]:
        """(custom_id, row id, store key) of every request a batch holds."""
        rows = self.db.execute(
            "SELECT r.custom_id, r.row_id, r.store_key FROM batch_requests r"
            " JOIN batch_files f ON f.file_id = r.file_id WHERE f.batch_id = ?"
            " ORDER BY r.custom_id",
            (batch_id,),
        ).fetchall()
        return [(str(c), str(r), str(k)) for c, r, k in rows]

    # batches ----------------------------------------------------------------------------------

    def add_batch(self, batch: Any, *, run: str, base_url: str) -> None:
        """Record a batch the moment the server created it (and tie its input file to it)."""
        with self.db:
            self._upsert(batch, run=run, base_url=base_url)
            self.db.execute(
                "UPDATE batch_files SET batch_id = ? WHERE file_id = ?",
                (batch.id, batch.input_file_id),
            )

    def update_batch(self, batch: Any) -> None:
        """Keep a batch's latest status, counts and files as the server reported them."""
        rec = self.batch(batch.id)
        with self.db:
            self._upsert(
                batch,
                run=rec.run if rec else "",
                base_url=rec.base_url if rec else "",
            )

    def _upsert(self, batch: Any, *, run: str, base_url: str) -> None:
        counts = batch.request_counts
        errors = None
        if getattr(batch, "errors", None) is not None and batch.errors.data:
            errors = "; ".join(
                f"line {e.line}: {e.message}" if e.line is not None else str(e.message)
                for e in batch.errors.data
            )
        self.db.execute(
            f"INSERT INTO batches ({_BATCH_COLUMNS}) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?)"
            " ON CONFLICT (batch_id) DO UPDATE SET status = excluded.status,"
            " total = excluded.total, completed = excluded.completed, failed = excluded.failed,"
            " output_file_id = excluded.output_file_id, error_file_id = excluded.error_file_id,"
            " expires_at = excluded.expires_at, errors = excluded.errors",
            (
                batch.id,
                batch.input_file_id,
                run,
                base_url,
                batch.status,
                counts.total if counts else 0,
                counts.completed if counts else 0,
                counts.failed if counts else 0,
                batch.output_file_id,
                batch.error_file_id,
                batch.created_at,
                batch.expires_at,
                errors,
            ),
        )

    def mark_collected(self, batch_id: str) -> None:
        with self.db:
            self.db.execute("UPDATE batches SET collected = 1 WHERE batch_id = ?", (batch_id,))

    def settle_answered(self) -> list[str]:
        """Mark collected every batch whose every request the store already holds a good
        answer for (coded online since it was sent): nothing waits on it any more. Their ids."""
        try:
            settled = [
                str(b)
                for (b,) in self.db.execute(
                    "SELECT b.batch_id FROM batches b WHERE b.collected = 0 AND NOT EXISTS ("
                    " SELECT 1 FROM batch_requests r JOIN batch_files f ON f.file_id = r.file_id"
                    " WHERE f.batch_id = b.batch_id AND NOT EXISTS (SELECT 1 FROM answers a"
                    " WHERE a.request_hash = r.store_key AND a.row_id = r.row_id AND a.ok = 1))"
                )
            ]
        except sqlite3.OperationalError:  # no answers table: nothing coded online
            return []
        for batch_id in settled:
            self.mark_collected(batch_id)
        return settled

    def batch(self, batch_id: str) -> BatchRecord | None:
        row = self.db.execute(
            f"SELECT {_BATCH_COLUMNS} FROM batches WHERE batch_id = ?", (batch_id,)
        ).fetchone()
        return _record(row) if row else None

    def batches(self, *, uncollected: bool = False, run: str | None = None) -> list[BatchRecord]:
        """Every batch (oldest first); only those not yet read back, or of one run."""
        where, args = [], []
        if uncollected:
            where.append("collected = 0")
        if run is not None:
            where.append("run = ?")
            args.append(run)
        sql = f"SELECT {_BATCH_COLUMNS} FROM batches"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [_record(r) for r in self.db.execute(sql + " ORDER BY created_at, batch_id", args)]

    def in_flight(self, custom_id: str) -> str | None:
        """The batch not yet read back that holds this request, if any."""
        row = self.db.execute(
            "SELECT b.batch_id FROM batch_requests r JOIN batch_files f ON f.file_id = r.file_id"
            " JOIN batches b ON b.batch_id = f.batch_id"
            " WHERE r.custom_id = ? AND b.collected = 0 LIMIT 1",
            (custom_id,),
        ).fetchone()
        return str(row[0]) if row else None

    # answers ----------------------------------------------------------------------------------

    def put_answers(self, rows: Iterable[tuple[str, str, bool, str | None, str | None]]) -> int:
        """Keep answers (custom_id, batch id, ok, completion JSON, error) in one commit; an
        error never replaces an answer that was good."""
        n = 0
        with self.db:
            for cid, batch_id, ok, body, error in rows:
                n += 1
                if ok:
                    self.db.execute(
                        "INSERT OR REPLACE INTO batch_answers (custom_id, batch_id, ok, body,"
                        " error, read) VALUES (?, ?, 1, ?, NULL, ?)",
                        (cid, batch_id, body, _now()),
                    )
                else:
                    self.db.execute(
                        "INSERT INTO batch_answers (custom_id, batch_id, ok, body, error, read)"
                        " VALUES (?, ?, 0, NULL, ?, ?) ON CONFLICT (custom_id) DO UPDATE SET"
                        " batch_id = excluded.batch_id, error = excluded.error,"
                        " read = excluded.read WHERE batch_answers.ok = 0",
                        (cid, batch_id, error, _now()),
                    )
        return n

    def answer(self, custom_id: str) -> StoredAnswer | None:
        row = self.db.execute(
            "SELECT custom_id, batch_id, ok, body, error FROM batch_answers WHERE custom_id = ?",
            (custom_id,),
        ).fetchone()
        if row is None:
            return None
        cid, bid, ok, body, error = row
        return StoredAnswer(str(cid), str(bid), bool(ok), json.loads(body) if body else None, error)

    def has_ok(self, custom_id: str) -> bool:
        row = self.db.execute(
            "SELECT ok FROM batch_answers WHERE custom_id = ?", (custom_id,)
        ).fetchone()
        return bool(row and row[0])

    def unanswered(self, batch_id: str) -> Iterator[str]:
        """The requests of a batch that neither its output nor its error file answered."""
        rows = self.db.execute(
            "SELECT DISTINCT r.custom_id FROM batch_requests r"
            " JOIN batch_files f ON f.file_id = r.file_id"
            " LEFT JOIN batch_answers a ON a.custom_id = r.custom_id AND a.batch_id = f.batch_id"
            " WHERE f.batch_id = ? AND a.custom_id IS NULL",
            (batch_id,),
        )
        for (cid,) in rows:
            yield str(cid)

    def close(self) -> None:
        if self._own:
            self.db.close()

    def __enter__(self) -> BatchStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _record(row: tuple[Any, ...]) -> BatchRecord:
    (bid, fid, run, url, status, total, completed, failed, out, err, created, expires, coll, e) = (
        row
    )
    return BatchRecord(
        str(bid),
        str(fid),
        str(run),
        str(url),
        str(status),
        int(total),
        int(completed),
        int(failed),
        out,
        err,
        created,
        expires,
        bool(coll),
        e,
    )
