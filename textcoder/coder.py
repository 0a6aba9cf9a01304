"""`Coder`: the public entry point that codes texts and tables with a codebook."""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from . import calibration as cal
from ._exceptions import DataError, UsageError
from ._version import __version__
from .asyncsync import run_sync
from .backends import Backend, make_backend
from .backends.base import ABILITIES, Capabilities
from .codebook import Codebook
from .progress import Progress
from .ratelimit import RateLimiter
from .results import CodeResult, OrderedChunks, with_codes
from .retry import RetryPolicy
from .runlock import RunLock
from .runner import Runner, RunStats
from .scoring import METHODS, Scorer, Settings, default_scorer, get_scorer, supported_methods
from .store import Store, default_store_path
from .tables import CHUNK_ROWS, TableWriter, iter_table, table_columns


class Coder:
    """Codes texts with a codebook on a model: the embedded one by default.

    >>> coder = Coder(Codebook.from_yaml("examples/sentiment.yaml"))
    >>> coder.code("I loved the new Batman movie!").label
    """

    def __init__(
        self,
        codebook: Codebook | str | Path,
        model: str | None = None,
        base_url: str | None = None,
        scoring: str | None = None,
        *,
        api_key: str | None = None,
        backend: str | Backend | None = None,
        concurrency: int | None = None,
        max_tokens: int = 10,
        temperature: float | None = None,
        seed: int | None = 0,
        n: int = 5,
        threshold: float = 0.5,
        timeout: float = 60.0,
        calibrate: str = "none",
        store: str | Path | None = None,
        fresh: bool = False,
        max_retries: int = 6,
        rpm: float | None = None,
        tpm: float | None = None,
        truncate: bool = False,
    ) -> None:
        self.codebook = (
            Codebook.from_yaml(codebook) if isinstance(codebook, str | Path) else codebook
        )
        if isinstance(backend, Backend):
            self.backend = backend
        else:
            # textcoder retries (with Retry-After, counted, stored), so the client must not
            self.backend = make_backend(
                model, base_url, api_key, backend, timeout=timeout, max_retries=0
            )
        run_sync(self.backend.start)
        if scoring is not None and scoring not in METHODS:
            raise UsageError(f"unknown scoring {scoring!r}; one of {', '.join(METHODS)}")
        if n < 1:
            raise UsageError(f"n must be at least 1, not {n}")
        if concurrency is not None and concurrency < 1:
            raise UsageError(f"concurrency must be at least 1, not {concurrency}")
        self.retry = RetryPolicy(max_retries=max(0, max_retries))
        #: what the engine honours (an HTTP server is asked once, where the method depends on it)
        self.capabilities = self._probe(scoring)
        self.scorer: Scorer = (
            get_scorer(scoring) if scoring is not None else default_scorer(self.capabilities)
        )
        self.scoring = self.scorer.name
        if not self.scorer.supported(self.capabilities):
            works = ", ".join(supported_methods(self.capabilities))
            raise UsageError(
                f"scoring {self.scoring!r} needs an engine that can "
                f"{' and '.join(ABILITIES[f] for f in self.scorer.needs)}; the "
                f"{self.backend.name!r} backend here can use --scoring {works}"
            )
        self.notes: list[str] = []
        if self.codebook.mode == "joint" and not self.capabilities.json_schema:
            self.notes.append(
                f"the {self.backend.name} backend does not honour json_schema: "
                "each variable is coded in its own request instead of `mode: joint`"
            )
        self.concurrency = concurrency or self.backend.default_concurrency
        self.params = self.scorer.params(Settings(max_tokens, temperature, seed, n))
        self.threshold = threshold
        self.last_stats: RunStats | None = None
        self.store_path = Path(store) if store is not None else None
        self._store: Store | None = None
        self._lock: RunLock | None = None
        self.fresh = fresh
        self.rpm, self.tpm = rpm, tpm
        #: cut texts longer than the model's context to fit (counted in the manifest)
        self.truncate = truncate
        if calibrate not in cal.METHODS:
            raise UsageError(f"unknown calibration {calibrate!r}; one of {', '.join(cal.METHODS)}")
        self.calibrate = calibrate
        self.last_calibration: dict[str, Any] | None = None

    def _open_store(self, path: Path | None = None) -> Store | None:
        """The store at `path` (or the coder's `store`), opened once; None: in memory per run."""
        path = path or self.store_path
        if path is None:
            return None
        if self._store is None or Path(self._store.path) != path:
            self._close_store()
            self._lock = RunLock(path).acquire()
            self._store = Store(path)
        return self._store

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def _runner(self, store: Store | None = None) -> Runner:
        return Runner(
            self.codebook,
            self.backend,
            self.scoring,
            self.params,
            self.concurrency,
            store=store or self._open_store(),
            fresh=self.fresh,
            retry=self.retry,
            limiter=RateLimiter(self.rpm, self.tpm),
            threshold=self.threshold,
            capabilities=self.capabilities,
            joint=self.codebook.mode == "joint" and bool(self.capabilities.json_schema),
            truncate=self.truncate,
        )

    def _probe(self, scoring: str | None) -> Capabilities:
        """What the engine honours: asked (`Backend.probe`, retried) when the choice of method
        or the requests depend on it, else what the backend knows or assumes."""
        joint = self.codebook.mode == "joint"
        if scoring is not None and not joint and not get_scorer(scoring).probes:
            return self.backend.capabilities()
        return run_sync(lambda: self.backend.probe(json_schema=joint, retry=self.retry))

    def code(self, text: str) -> CodeResult:
        """Code one text: every variable's label, probabilities and raw answer."""
        runner = self._runner()
        try:
            return run_sync(lambda: runner.code_text(text))
        finally:
            self.notes.extend(n for n in runner.notes if n not in self.notes)

    def code_texts(
        self, texts: Sequence[str], progress: bool = True, ids: Sequence[object] | None = None
    ) -> list[CodeResult]:
        """Code many texts; results in input order. With a `store`, `ids` name the rows there
        (default: the row numbers) and a rerun sends only what the store lacks."""
        runner = self._runner()
        idlist = [str(i) for i in ids] if ids is not None else None
        try:
            results = run_sync(lambda: runner.run(list(texts), progress=progress, ids=idlist))
        finally:
            self._finish(runner)
        return results

    def _finish(self, runner: Runner) -> None:
        """Keep a run's statistics and anything it had to say, for the manifest."""
        self.last_stats = runner.stats
        self.notes.extend(n for n in runner.notes if n not in self.notes)

    def code_frame(
        self,
        df: pd.DataFrame,
        text_column: str = "text",
        progress: bool = True,
        gold: str | Sequence[str] | dict[str, str] | None = None,
        id_column: str | None = None,
    ) -> pd.DataFrame:
        """A copy of `df` with the coded columns appended (see the README for their names),
        calibrated over all rows when the coder calibrates (`gold`: human codes for `fit`)."""
        for col in (text_column, id_column):
            if col is not None and col not in df.columns:
                cols = ", ".join(map(str, df.columns))
                raise DataError(f"no column {col!r} in the table (columns: {cols})")
        texts = ["" if _missing(t) else str(t) for t in df[text_column].tolist()]
        ids = df[id_column].tolist() if id_column is not None else None
        results = self.code_texts(texts, progress=progress, ids=ids)
        return self.calibrate_frame(
            with_codes(df, self.codebook, results, self.scorer.columns), gold
        )

    def calibrate_frame(
        self, coded: pd.DataFrame, gold: str | Sequence[str] | dict[str, str] | None = None
    ) -> pd.DataFrame:
        """Calibrate a coded table over all its rows with this coder's method (see README)."""
        if self.calibrate == "none":
            return coded
        content_free = None
        if self.calibrate in cal.NEEDS_CONTENT_FREE:
            runner = self._runner()
            found = run_sync(lambda: runner.run(list(cal.CONTENT_FREE_INPUTS), progress=False))
            content_free = {
                v.name: [[r[v.name].probs[lab] for lab in v.labels] for r in found]
                for v in self.codebook.variables
            }
        out, info = cal.calibrate_table(
            coded,
            self.codebook,
            self.calibrate,
            gold=cal.gold_columns(self.codebook, gold),
            content_free=content_free,
        )
        if content_free is not None:
            info["content_free_inputs"] = list(cal.CONTENT_FREE_INPUTS)
        self.last_calibration = info
        return out

    def code_file(
        self,
        data: str | Path,
        output: str | Path,
        *,
        text_column: str = "text",
        id_column: str | None = None,
        store: str | Path | None = None,
        progress: str = "auto",
        handle_signals: bool = False,
        gold: str | Sequence[str] | dict[str, str] | None = None,
        chunksize: int = CHUNK_ROWS,
        warn: Callable[[str], None] | None = None,
    ) -> RunStats:
        """Code a table file into `output`, every answer kept in a store as it arrives.

        The store (`store`, else the coder's, else `OUTPUT.textcoder.sqlite`) makes a rerun
        resume: it sends only what the store lacks, then writes the whole output. The input is
        read in chunks and the output written chunk by chunk in input order, so memory stays
        flat however long the table (unless calibrating, which needs every row at once).
        `progress`: `auto`, `bar`, `lines` or `off`. Raises `RunInterrupted` on SIGINT/SIGTERM
        when `handle_signals`; nothing is written then, and the next run resumes.
        """
        total = self._scan(data, text_column, id_column, chunksize, warn)
        path = Path(store) if store is not None else self.store_path or default_store_path(output)
        runner = self._runner(self._open_store(path))
        prog = Progress(total, runner.stats, mode=progress)
        writer = TableWriter(output)
        frames: list[pd.DataFrame] = []
        # each chunk is written as soon as its rows are coded, in input order
        chunks = OrderedChunks(
            iter_table(data, chunksize),
            self.codebook,
            self.scorer.columns,
            writer.write if self.calibrate == "none" else frames.append,
            empty=pd.DataFrame(columns=table_columns(data)),
        )
        try:
            try:
                run_sync(
                    lambda: runner.run_items(
                        self._rows(data, text_column, id_column, chunksize),
                        prog,
                        handle_signals,
                        on_row=chunks.add,
                    )
                )
            finally:
                self._finish(runner)
            chunks.finish()
            if frames:
                writer.write(self.calibrate_frame(pd.concat(frames), gold))
            writer.close()
        except BaseException:
            writer.abort()
            raise
        return runner.stats

    def _scan(
        self,
        data: str | Path,
        text_column: str,
        id_column: str | None,
        chunksize: int,
        warn: Callable[[str], None] | None,
    ) -> int:
        """Check the columns and ids before anything is sent; count rows, report empty texts."""
        columns = table_columns(data)
        for col, flag in ((text_column, "--text-column"), (id_column, "--id-column")):
            if col is not None and col not in columns:
                raise DataError(
                    f"{data}: no column {col!r} (columns: {', '.join(columns)}); "
                    f"choose one with {flag}"
                )
        hashes = array("q")  # 8 bytes an id: a set of a million id strings is ~90 MB
        total = empty = 0
        for row_id, text in self._rows(data, text_column, id_column, chunksize):
            total += 1
            if id_column is not None:
                hashes.append(hash(row_id))
            if not text.strip():
                empty += 1
                if warn is not None and empty <= 10:
                    row = f"id {row_id!r}" if id_column is not None else f"row {row_id}"
                    warn(f"{data}: {row}: empty text, coded 'invalid'")
        if warn is not None and empty > 10:
            warn(f"{data}: {empty} empty texts in all, coded 'invalid'")
        if id_column is not None:
            self._check_ids(data, id_column, text_column, chunksize, hashes)
        return total

    def _check_ids(
        self, data: str | Path, id_column: str, text_column: str, chunksize: int, hashes: array[int]
    ) -> None:
        """Raise on the first id that repeats: hashes that repeat are found by sorting, then
        the rows with those hashes are read again to compare the ids themselves."""
        import numpy as np

        h = np.sort(np.frombuffer(hashes, dtype=np.int64))
        twice = set(h[1:][h[1:] == h[:-1]].tolist())
        if not twice:
            return
        seen: set[str] = set()
        for row_id, _ in self._rows(data, text_column, id_column, chunksize):
            if hash(row_id) in twice:
                if row_id in seen:
                    raise DataError(f"{data}: column {id_column!r} repeats the id {row_id!r}")
                seen.add(row_id)

    @staticmethod
    def _rows(
        data: str | Path, text_column: str, id_column: str | None, chunksize: int
    ) -> Iterator[tuple[str, str]]:
        """(row id, text) for every row, read chunk by chunk."""
        cols = list(dict.fromkeys(c for c in (text_column, id_column) if c is not None))
        for chunk in iter_table(data, chunksize, columns=cols):
            yield from _chunk_rows(chunk, text_column, id_column)

    def manifest(self, **extra: Any) -> dict[str, Any]:
        """What a run's manifest records: versions, codebook, engine, parameters, counts, times."""
        stats = self.last_stats or RunStats()
        info = self.backend.describe()
        fps = sorted(stats.fingerprints)
        return {
            "textcoder_version": __version__,
            "codebook": {
                "path": self.codebook.path,
                "name": self.codebook.name,
                "sha256": self.codebook.sha256,
                "variables": {v.name: v.labels for v in self.codebook.variables},
            },
            **info,
            "system_fingerprint": fps[0]
            if len(fps) == 1
            else (fps or info.get("system_fingerprint")),
            "scoring": self.scoring,
            "mode": self.codebook.mode,
            "capabilities": self.capabilities.as_dict(),
            "notes": self.notes,
            "parameters": {
                **self.params.as_dict(),
                "concurrency": self.concurrency,
                "threshold": self.threshold,
                "truncate": self.truncate,
            },
            **extra,
            **stats.as_dict(),
            "calibration": self.last_calibration or {"method": self.calibrate},
        }

    def close(self) -> None:
        """Release the engine's connections and the store."""
        self._close_store()
        run_sync(self.backend.aclose)

    def __enter__(self) -> Coder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _chunk_rows(
    chunk: pd.DataFrame, text_column: str, id_column: str | None
) -> Iterator[tuple[str, str]]:
    """(row id, text) pairs of one chunk; the row id is the id column's value, else the row
    number counted from 1."""
    texts = chunk[text_column].tolist()
    ids = (
        [str(i) for i in chunk[id_column].tolist()]
        if id_column is not None
        else [str(i + 1) for i in chunk.index]
    )
    for row_id, text in zip(ids, texts, strict=True):
        yield row_id, "" if _missing(text) else str(text)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)
