"""`Coder`: the public entry point that codes texts and tables with a codebook."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from . import __version__
from ._exceptions import DataError, UsageError
from .backends import Backend, CompletionParams, make_backend
from .codebook import Codebook
from .results import CodeResult, result_columns
from .runner import Runner, RunStats, run_sync
from .scoring import METHODS


class Coder:
    """Codes texts with a codebook on a model: the embedded one by default.

    >>> coder = Coder(Codebook.from_yaml("examples/sentiment.yaml"))
    >>> coder.code("I loved the new Batman movie!").label
    """

    def __init__(
        self,
        codebook: Codebook | str,
        model: str | None = None,
        base_url: str | None = None,
        scoring: str | None = None,
        *,
        api_key: str | None = None,
        backend: str | Backend | None = None,
        concurrency: int | None = None,
        max_tokens: int = 10,
        temperature: float = 0.0,
        seed: int | None = 0,
        timeout: float = 60.0,
    ) -> None:
        self.codebook = Codebook.from_yaml(codebook) if isinstance(codebook, str) else codebook
        if isinstance(backend, Backend):
            self.backend = backend
        else:
            self.backend = make_backend(model, base_url, api_key, backend, timeout=timeout)
        self.scoring = scoring or self.backend.default_scoring
        if self.scoring not in METHODS:
            raise UsageError(f"unknown scoring {self.scoring!r}; one of {', '.join(METHODS)}")
        self.concurrency = concurrency or self.backend.default_concurrency
        self.params = CompletionParams(
            max_tokens=max_tokens,
            temperature=temperature,
            logprobs=self.scoring == "logprobs",
            seed=seed,
        )
        self.last_stats: RunStats | None = None

    def _runner(self) -> Runner:
        return Runner(self.codebook, self.backend, self.scoring, self.params, self.concurrency)

    def code(self, text: str) -> CodeResult:
        """Code one text: every variable's label, probabilities and raw answer."""
        runner = self._runner()
        return run_sync(lambda: runner.code_text(text))

    def code_texts(self, texts: Sequence[str], progress: bool = True) -> list[CodeResult]:
        """Code many texts; results in input order."""
        runner = self._runner()
        results = run_sync(lambda: runner.run(list(texts), progress=progress))
        self.last_stats = runner.stats
        return results

    def code_frame(
        self, df: pd.DataFrame, text_column: str = "text", progress: bool = True
    ) -> pd.DataFrame:
        """A copy of `df` with the coded columns appended (see the README for their names)."""
        if text_column not in df.columns:
            cols = ", ".join(map(str, df.columns))
            raise DataError(f"no column {text_column!r} in the table (columns: {cols})")
        texts = ["" if _missing(t) else str(t) for t in df[text_column].tolist()]
        results = self.code_texts(texts, progress=progress)
        coded = pd.DataFrame(result_columns(self.codebook, results), index=df.index)
        clash = [c for c in coded.columns if c in df.columns]
        return pd.concat([df.drop(columns=clash), coded], axis=1)

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
            "parameters": {**self.params.as_dict(), "concurrency": self.concurrency},
            **extra,
            **stats.as_dict(),
        }

    def close(self) -> None:
        """Release the engine's connections."""
        run_sync(self.backend.aclose)


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)
