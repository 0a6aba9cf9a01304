"""Every answer of a run, kept in SQLite (WAL) the moment it arrives, so no run pays twice.

One row per (request hash, row id): the hash covers everything that shapes the answer
(backend, model, messages, parameters, scoring), the row id names the input row. A rerun of
the same command finds its answers here and sends only what is missing; a changed codebook
or model hashes differently, so old answers stay and are reused only when they match.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._exceptions import DataError
from ._json import from_json, to_json
from .output import INVALID, LEGACY_INVALID
from .scoring.result import VariableResult

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    request_hash TEXT NOT NULL,
    row_id TEXT NOT NULL,
    variable TEXT NOT NULL,
    ok INTEGER NOT NULL,
    result TEXT NOT NULL,
    model TEXT,
    system_fingerprint TEXT,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    PRIMARY KEY (request_hash, row_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def canonical_json(payload: Mapping[str, Any]) -> bytes:
    """The request's stable JSON (sorted keys, no spaces), the bytes its store key hashes;
    a lone surrogate is kept as its bytes, so it hashes rather than crashes."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass")


def request_hash(payload: Mapping[str, Any]) -> str:
    """sha256 of the request's `canonical_json`."""
    return hashlib.sha256(canonical_json(payload)).hexdigest()


@dataclass(frozen=True)
class Stored:
    """One stored answer: the coded result and what the engine reported with it."""

    result: VariableResult
    ok: bool
    model: str | None = None
    system_fingerprint: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def result_to_json(result: VariableResult) -> str:
    """A result as JSON; NaN probabilities (a failed row) become null."""
    return to_json(
        {
            "label": result.label,
            "probs": {k: None if math.isnan(v) else v for k, v in result.probs.items()},
            "other": None if math.isnan(result.other) else result.other,
            "raw": result.raw,
            "error": result.error,
            "extra": result.extra,
        }
    ).decode("utf-8")


def result_from_json(text: str) -> VariableResult:
    """The inverse of `result_to_json`."""
    d = from_json(text)
    nan = float("nan")
    label = d["label"]
    if label == LEGACY_INVALID and label not in d["probs"]:  # stored by textcoder 0.1
        label = INVALID
    return VariableResult(
        label=label,
        probs={k: nan if v is None else float(v) for k, v in d["probs"].items()},
        other=nan if d["other"] is None else float(d["other"]),
        raw=d.get("raw") or "",
        error=d.get("error"),
        extra=d.get("extra") or {},
    )


_INSERT = (
    "INSERT OR REPLACE INTO answers (request_hash, row_id, variable, ok, result, model,"
    " system_fingerprint, prompt_tokens, completion_tokens, created)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _stored(ok: int, result: str, model: str | None, fp: str | None, pt: int, ct: int) -> Stored:
    """A `Stored` from its columns, in the table's order."""
    return Stored(result_from_json(result), bool(ok), model, fp, pt, ct)


#: the columns `_stored` takes (ok ... completion_tokens), within an `_INSERT` row
_ANSWER = slice(3, 9)


#: answers are committed in groups: every COMMIT_EVERY answers or COMMIT_SECONDS after the
#: first uncommitted one, whichever comes first (and at the end of every run). A SIGKILL loses
#: at most the answers of that window, besides the requests in flight; one commit per answer
#: cost about 80 us a row, the largest own cost of a fast run.
COMMIT_EVERY = 256
COMMIT_SECONDS = 0.2


class Store:
    """An SQLite file (or `:memory:`) of answers, committed in small groups as they arrive
    (see `COMMIT_EVERY`)."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        #: answers kept since the last commit, by (request hash, row id), and the timer that
        #: commits them
        self._pending: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._timer: asyncio.TimerHandle | None = None
        try:
            self.db = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit survives the process being killed; only a power cut
            # could lose the last few, and then the store is still consistent
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            version = self.db.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'"
            ).fetchone()
            if version is None:
                self.db.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,)
                )
                self.db.commit()
            elif version[0] != SCHEMA_VERSION:
                raise DataError(
                    f"{self.path}: store schema {version[0]}, this textcoder reads {SCHEMA_VERSION}"
                )
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{self.path}: not a textcoder store: {exc}") from None

    def put(
        self,
        key: str,
        row_id: str,
        variable: str,
        result: VariableResult,
        *,
        ok: bool,
        model: str | None = None,
        system_fingerprint: str | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
    ) -> None:
        """Keep one answer (a later answer for the same key replaces it), written with its
        group: at once past `COMMIT_EVERY` answers, else within `COMMIT_SECONDS`. Until then
        it waits in memory (one `executemany` a group costs less than a statement an answer),
        where this store's reads find it too."""
        self._pending[(key, row_id)] = (
            key,
            row_id,
            variable,
            int(ok),
            result_to_json(result),
            model,
            system_fingerprint,
            prompt_tokens,
            completion_tokens,
            datetime.now(timezone.utc).isoformat(timespec="seconds"),
        )
        if len(self._pending) >= COMMIT_EVERY:
            self.commit()
        elif self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # called outside a run: nothing would commit later
                self.commit()
                return
            self._timer = loop.call_later(COMMIT_SECONDS, self.commit)

    def commit(self) -> None:
        """Write and commit the answers kept since the last commit (a run's end calls it too)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pending:
            rows, self._pending = list(self._pending.values()), {}
            self.db.executemany(_INSERT, rows)
            self.db.commit()

    def is_empty(self) -> bool:
        """Whether the store holds no answer at all (a run on it has nothing to look up)."""
        if self._pending:
            return False
        return self.db.execute("SELECT 1 FROM answers LIMIT 1").fetchone() is None

    def _waiting(self, key: tuple[str, str]) -> Stored | None:
        """An answer kept in memory until its group is written, or None."""
        row = self._pending.get(key)
        return None if row is None else _stored(*row[_ANSWER])

    def has_ok(self, key: str, row_id: str) -> bool:
        """Whether a successful answer is stored for this request and row."""
        waiting = self._waiting((key, row_id))
        if waiting is not None:
            return waiting.ok
        row = self.db.execute(
            "SELECT ok FROM answers WHERE request_hash = ? AND row_id = ?", (key, row_id)
        ).fetchone()
        return bool(row and row[0])

    def get(self, key: str, row_id: str) -> Stored | None:
        """The stored answer, or None (one lookup on the primary key)."""
        waiting = self._waiting((key, row_id))
        if waiting is not None:
            return waiting
        row = self.db.execute(
            "SELECT ok, result, model, system_fingerprint, prompt_tokens, completion_tokens"
            " FROM answers WHERE request_hash = ? AND row_id = ?",
            (key, row_id),
        ).fetchone()
        if row is None:
            return None
        return _stored(*row)

    def get_many(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Stored]:
        """The stored answers for many (request hash, row id) pairs, in batches."""
        keys = list(keys)
        found = {k: hit for k in keys if (hit := self._waiting(k)) is not None}
        keys = [k for k in keys if k not in found]
        step = 400
        for start in range(0, len(keys), step):
            batch = keys[start : start + step]
            values = ", ".join("(?, ?)" for _ in batch)
            flat = [x for pair in batch for x in pair]
            rows = self.db.execute(
                "SELECT request_hash, row_id, ok, result, model, system_fingerprint,"
                " prompt_tokens, completion_tokens FROM answers"
                f" WHERE (request_hash, row_id) IN (VALUES {values})",
                flat,
            ).fetchall()
            for h, rid, *answer in rows:
                found[(h, rid)] = _stored(*answer)
        return found

    def counts(self) -> dict[str, int]:
        """How many answers the store holds: `ok` and `failed`."""
        self.commit()
        ok, failed = self.db.execute(
            "SELECT COALESCE(SUM(ok), 0), COALESCE(SUM(1 - ok), 0) FROM answers"
        ).fetchone()
        return {"ok": int(ok), "failed": int(failed)}

    def close(self) -> None:
        self.commit()
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_store_path(output: str | Path) -> Path:
    """`coded.csv` -> `coded.csv.textcoder.sqlite`, beside the output."""
    p = Path(output)
    return p.with_name(p.name + ".textcoder.sqlite")
