"""`Coder`: the public entry point that codes texts and tables with a codebook."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
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
from .examples_select import make_selector
from .limits import check_settings
from .output import round_display as output_round
from .progress import Progress
from .ratelimit import RateLimiter
from .results import CodeResult, OrderedChunks, with_codes
from .retry import RetryPolicy
from .run.online import OnlineExecutor
from .run.stats import now
from .runlock import RunLock
from .runner import Runner, RunStats
from .scoring import METHODS, Scorer, Settings, default_scorer, get_scorer, supported_methods
from .store import Store, default_store_path
from .table_rows import TableStream, missing, scan_rows
from .tables import CHUNK_ROWS, TableWriter, table_columns


class Coder:
    """Codes texts with a codebook on a model: the embedded one by default.

    >>> coder = Coder(Codebook.from_yaml("examples/sentiment.yaml"))
    >>> coder.code("I loved the new Batman movie!").label
    """

    def __init__(
        self,
        codebook: Codebook | str | Path,
        model: str | None = None,
        base_url: str | Sequence[str] | None = None,
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
        calibrate: str | None = None,
        store: str | Path | None = None,
        fresh: bool = False,
        max_retries: int = 6,
        rpm: float | None = None,
        tpm: float | None = None,
        truncate: bool = False,
        allow_mixed_models: bool = False,
        batch: bool = False,
    ) -> None:
        self.codebook = (
            Codebook.from_yaml(codebook) if isinstance(codebook, str | Path) else codebook
        )
        check_settings(
            concurrency=concurrency, max_tokens=max_tokens, n=n, max_retries=max_retries,
            timeout=timeout, rpm=rpm, tpm=tpm, temperature=temperature, threshold=threshold,
        )  # fmt: skip
        if scoring is not None and scoring not in METHODS:
            raise UsageError(f"unknown scoring {scoring!r}; one of {', '.join(METHODS)}")
        if isinstance(backend, Backend):
            self.backend = backend
        else:
            # textcoder retries (with Retry-After, counted, stored), so the client must not
            self.backend = make_backend(
                model,
                base_url,
                api_key,
                backend,
                timeout=timeout,
                max_retries=0,
                allow_mixed_models=allow_mixed_models,
            )
        self.retry = RetryPolicy(max_retries=max_retries)
        #: batch hook (issue 16): requests go through OpenAI's Batch API (batch_coder.py), so
        #: nothing is probed online, OpenAI's abilities are assumed, and `executor`, when set,
        #: answers the runs' requests in place of the online executor
        self.batch = batch
        self.executor: Callable[[Runner], OnlineExecutor] | None = None
        try:  # a server that cannot be used: its connections are closed before the error
            run_sync(self.backend.start)
            #: what the engine honours (an HTTP server is asked once, where the method needs it)
            self.capabilities = self._probe(scoring)
            self.scorer: Scorer = choose_scorer(scoring, self.capabilities, self.backend.name)
        except BaseException:
            run_sync(self.backend.aclose)
            raise
        #: the probe's requests, counted in the first run's statistics
        self._probes_uncounted = self.capabilities.probe_requests
        self.scoring = self.scorer.name
        self.notes: list[str] = []
        if self.codebook.mode == "joint" and not self.capabilities.json_schema:
            self.notes.append(
                f"the {self.backend.name} backend does not honour json_schema: "
                "each variable is coded in its own request instead of `mode: joint`"
            )
        #: requests in flight per engine (each server of several)
        self.concurrency = concurrency or self.backend.default_concurrency
        self.backend.set_concurrency(self.concurrency)
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
        #: how long a request may take: after Ctrl-C, requests in flight get this long
        self.timeout = timeout
        if calibrate is None:  # the method's own default (docs: concepts/calibration.md)
            calibrate = self.scorer.calibration
        if calibrate not in cal.METHODS:
            raise UsageError(f"unknown calibration {calibrate!r}; one of {', '.join(cal.METHODS)}")
        self.calibrate = calibrate
        self.last_calibration: dict[str, Any] | None = None
        #: what the last calibration's own requests (content-free inputs) cost
        self._calibration_stats: RunStats | None = None
        # examples_from hook: per-text examples (textcoder/examples_select.py)
        self.examples = make_selector(self.codebook, self.backend.describe().get("model_path"))

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
        runner = Runner(
            self.codebook,
            self.backend,
            self.scoring,
            self.params,
            self.concurrency * self.backend.width,
            store=store or self._open_store(),
            fresh=self.fresh,
            retry=self.retry,
            limiter=RateLimiter(self.rpm, self.tpm),
            threshold=self.threshold,
            capabilities=self.capabilities,
            joint=self.codebook.mode == "joint" and bool(self.capabilities.json_schema),
            truncate=self.truncate,
            grace=self.timeout,
            examples=self.examples.choose if self.examples is not None else None,
        )
        if self.executor is not None:  # batch hook (issue 16)
            runner.executor = runner.rows.executor = self.executor(runner)
        return runner

    def _probe(self, scoring: str | None) -> Capabilities:
        """What the engine honours: asked (`Backend.probe`, retried) when the choice of method
        or the requests depend on it, else what the backend knows or assumes."""
        joint = self.codebook.mode == "joint"
        if self.batch:  # batch hook (issue 16): what OpenAI's Batch API honours, not probed
            return Capabilities(logprobs=True, top_logprobs=True, n=True, json_schema=True)
        if scoring is not None and not joint and not get_scorer(scoring).probes:
            return self.backend.capabilities()
        exact = scoring is not None and "continuations" in get_scorer(scoring).needs
        return run_sync(
            lambda: self.backend.probe(json_schema=joint, retry=self.retry, continuations=exact)
        )

    def code(self, text: str) -> CodeResult:
        """Code one text: every variable's label, probabilities and raw answer, calibrated
        with the coder's method as `code_texts` does (`batch` on one text is flat)."""
        self._check_calibration_without_gold()
        runner = self._runner()
        try:
            result = run_sync(lambda: runner.code_text(text))
        finally:
            self.notes.extend(n for n in runner.notes if n not in self.notes)
        return self.calibrate_results([result])[0]

    def code_texts(
        self, texts: Sequence[str], progress: bool = True, ids: Sequence[object] | None = None
    ) -> list[CodeResult]:
        """Code many texts; results in input order, calibrated over these texts with the
        coder's method, as `code_frame` and `textcoder code` calibrate (`raw_probs` keeps the
        model's own). With a `store`, `ids` name the rows there (default: the row numbers)
        and a rerun sends only what the store lacks."""
        self._check_calibration_without_gold()
        return self.calibrate_results(self._code_raw(texts, progress, ids))

    def _code_raw(
        self,
        texts: Sequence[str],
        progress: bool,
        ids: Sequence[object] | None,
        handle_signals: bool = False,
    ) -> list[CodeResult]:
        """The model's own results for `texts`, uncalibrated."""
        runner = self._runner()
        idlist = [str(i) for i in ids] if ids is not None else None
        try:
            results = run_sync(
                lambda: runner.run(list(texts), progress, idlist, handle_signals=handle_signals)
            )
        finally:
            self._finish(runner)
        return results

    def _check_calibration_without_gold(self) -> None:
        """`fit` learns from human codes, which only tables carry: say so before coding."""
        if self.calibrate == "fit":
            raise UsageError(
                "calibration 'fit' needs human codes: use code_frame(df, gold=COLUMN) or "
                "code_file(..., gold=COLUMN), or another calibrate method"
            )

    def calibrate_results(self, results: Sequence[CodeResult]) -> list[CodeResult]:
        """`results` calibrated together with the coder's method (as `calibrate_frame`
        calibrates a table): `probs` and `label` calibrated, `raw_probs` the model's own."""
        if self.calibrate == "none" or not results:
            return list(results)
        frame = with_codes(pd.DataFrame(index=range(len(results))), self.codebook, results)
        calibrated = self.calibrate_frame(frame)
        out = []
        for i, result in enumerate(results):
            found = dict(result.variables)
            for var in self.codebook.variables:
                rawcols = cal.prob_columns(var, "rawp")
                if var.multi or not set(rawcols) <= set(calibrated.columns):
                    continue
                row = calibrated.iloc[i]
                probs = {
                    lab: float(row[c])
                    for lab, c in zip(var.labels, cal.prob_columns(var), strict=True)
                }
                if any(p != p for p in probs.values()):  # a failed row: nothing to calibrate
                    continue
                found[var.name] = replace(
                    result[var.name],
                    label=str(row[var.name]),
                    probs=probs,
                    raw_probs=dict(result[var.name].probs),
                )
            out.append(CodeResult(found))
        return out

    def _finish(self, runner: Runner) -> None:
        """Keep a run's statistics and anything it had to say, for the manifest."""
        self.last_stats = runner.stats
        runner.stats.requests += self._probes_uncounted
        self._probes_uncounted = 0
        self.notes.extend(n for n in runner.notes if n not in self.notes)

    def code_frame(
        self,
        df: pd.DataFrame,
        text_column: str = "text",
        progress: bool = True,
        gold: str | Sequence[str] | dict[str, str] | None = None,
        id_column: str | None = None,
        handle_signals: bool = False,
    ) -> pd.DataFrame:
        """A copy of `df` with the coded columns appended (see the docs' output columns),
        calibrated over all rows when the coder calibrates (`gold`: human codes for `fit`).
        `handle_signals`: SIGINT/SIGTERM let requests in flight finish, keep every answer in
        the store and raise `RunInterrupted` (a command line's Ctrl-C)."""
        for col in (text_column, id_column):
            if col is not None and col not in df.columns:
                cols = ", ".join(map(str, df.columns))
                raise DataError(f"no column {col!r} in the table (columns: {cols})")
        texts = ["" if missing(t) else str(t) for t in df[text_column].tolist()]
        ids = df[id_column].tolist() if id_column is not None else None
        results = self._code_raw(texts, progress, ids, handle_signals)
        return self.calibrate_frame(
            with_codes(df, self.codebook, results, self.scorer.columns), gold
        )

    def calibrate_frame(
        self, coded: pd.DataFrame, gold: str | Sequence[str] | dict[str, str] | None = None
    ) -> pd.DataFrame:
        """Calibrate a coded table over all its rows with this coder's method (see the docs: Calibration)."""
        self._calibration_stats = None
        if self.calibrate == "none":
            return coded
        content_free = None
        if self.calibrate in cal.NEEDS_CONTENT_FREE and cal.has_probabilities(coded, self.codebook):
            runner = self._runner()
            found = run_sync(lambda: runner.run(list(cal.CONTENT_FREE_INPUTS), progress=False))
            self._calibration_stats = runner.stats
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
        rows: int | None = None,
        digits: int | None = None,
    ) -> RunStats:
        """Code a table file into `output`, every answer kept in a store as it arrives.

        The store (`store`, else the coder's, else `OUTPUT.textcoder.sqlite`) makes a rerun
        resume: it sends only what the store lacks, then writes the whole output. The input is
        read in chunks and the output written chunk by chunk in input order, so memory stays
        flat however long the table (unless calibrating, which needs every row at once).
        `progress`: `auto`, `bar`, `lines` or `off`. Raises `RunInterrupted` on SIGINT/SIGTERM
        when `handle_signals`; nothing is written then, and the next run resumes. `rows`: the
        row count `scan_rows` gave, where the caller checked the table before anything was sent.
        `digits` rounds the probability-like columns written (None: full precision).
        """
        check_settings(digits=digits)
        started = time.perf_counter()
        total = (
            rows if rows is not None else scan_rows(data, text_column, id_column, chunksize, warn)
        )
        path = Path(store) if store is not None else self.store_path or default_store_path(output)
        runner = self._runner(self._open_store(path))
        prog = Progress(total, runner.stats, mode=progress)
        writer = TableWriter(output)

        def write(frame: pd.DataFrame) -> None:  # display columns rounded to `digits`
            writer.write(output_round(frame, self.codebook.variables, digits))

        frames: list[pd.DataFrame] = []
        table = TableStream(data, text_column, id_column, chunksize)  # one parse, one way
        # each chunk is written as soon as its rows are coded, in input order
        chunks = OrderedChunks(
            table.chunks,
            self.codebook,
            self.scorer.columns,
            write if self.calibrate == "none" else frames.append,
            empty=pd.DataFrame(columns=table_columns(data)),
        )
        try:
            try:
                run_sync(
                    lambda: runner.run_items(
                        table.rows(),
                        prog,
                        handle_signals,
                        on_row=chunks.add,
                    )
                )
            finally:
                self._finish(runner)
            chunks.finish()
            if frames:
                write(self.calibrate_frame(pd.concat(frames), gold))
                if self._calibration_stats is not None:  # the content-free inputs it sent
                    runner.stats.absorb(self._calibration_stats)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        # the whole run, calibration included, is what the summary and manifest report
        runner.stats.seconds = time.perf_counter() - started
        runner.stats.ended = now()
        return runner.stats

    def manifest(self, **extra: Any) -> dict[str, Any]:
        """What a run's manifest records: versions, codebook, engine, parameters, counts, times."""
        return run_manifest(self, extra)

    def close(self) -> None:
        """Release the engine's connections and the store."""
        self._close_store()
        run_sync(self.backend.aclose)

    def __enter__(self) -> Coder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def choose_scorer(scoring: str | None, capabilities: Capabilities, backend: str) -> Scorer:
    """The scorer asked for, or the best the engine supports; one the engine cannot serve is
    a `UsageError` naming the methods that work there."""
    scorer = get_scorer(scoring) if scoring is not None else default_scorer(capabilities)
    if not scorer.supported(capabilities):
        works = ", ".join(supported_methods(capabilities))
        raise UsageError(
            f"scoring {scorer.name!r} needs an engine that can "
            f"{' and '.join(ABILITIES[f] for f in scorer.needs)}; the "
            f"{backend!r} backend here can use --scoring {works}"
        )
    return scorer


def run_manifest(self: Coder, extra: dict[str, Any]) -> dict[str, Any]:
    """A coder's manifest after its last run (see `Coder.manifest`)."""
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
        "system_fingerprint": fps[0] if len(fps) == 1 else (fps or info.get("system_fingerprint")),
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
        **({"examples_from": self.examples.describe()} if self.examples is not None else {}),
    }
