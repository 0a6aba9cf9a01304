"""One annotation project: a codebook, a sample, its store, who codes what, and the tokens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._exceptions import DataError, UsageError
from ..codebook import Codebook
from .sample import Sample, assign, check_assignment, check_settings, check_texts, load_sample
from .store import HumanStore, default_store_path


@dataclass(frozen=True)
class Annotation:
    book: Codebook
    sample: Sample
    store: HumanStore
    assignment: dict[str, list[str]]  # coder -> texts, in that coder's order
    tokens: dict[str, str]  # coder -> token; the admin's under ''
    resamples: int = 200
    seed: int = 0


def open_annotation(
    sample_path: str | Path,
    book: Codebook,
    coders: list[str] | None,
    *,
    store_path: str | Path | None = None,
    text_column: str = "text",
    id_column: str | None = None,
    overlap: float = 1.0,
    seed: int = 0,
    resamples: int = 200,
) -> Annotation:
    """Load the sample, check the settings, open (or create) its store and check it was made
    for this sample and these settings; `coders` None takes the coders the store knows (for
    an export). Nothing is written to the store before every check passed."""
    check_assignment(overlap, seed)
    if resamples < 1:
        raise UsageError(f"--resamples must be 1 or more, not {resamples}")
    sample = load_sample(sample_path, text_column, id_column)
    store = HumanStore(store_path or default_store_path(sample_path))
    stored = store.meta("settings")
    if coders is None:
        coders = store.coders()
        if stored is not None:
            overlap, seed = stored["overlap"], stored["seed"]
    wanted = {"sample": sample.digest(), "overlap": overlap, "seed": seed, "coders": coders}
    check_settings(stored, wanted, str(store.path))
    order = sample_order(store, stored, sample)
    if coders and stored != wanted:
        store.set_meta("settings", wanted)
    tokens = store.ensure_tokens(coders) if coders else {}
    return Annotation(
        book=book,
        sample=sample,
        store=store,
        assignment=assign(order, coders, overlap, seed) if coders else {},
        tokens=tokens,
        resamples=resamples,
        seed=seed,
    )


def sample_order(store: HumanStore, stored: dict[str, Any] | None, sample: Sample) -> list[str]:
    """The ids in the order the store was made with (coders keep their texts when the rows
    are reordered), after checking the texts are those the store was made for."""
    texts = store.meta("texts")
    if texts is None:
        if stored is not None and stored.get("sample") != sample.ids_digest():
            raise DataError(
                f"{store.path}: made for another sample than {sample.path}; use the sample "
                "it was made for, or a new --store"
            )
        texts = sample.fingerprint()  # a new store, or one from before texts were kept
        store.set_meta("texts", texts)
    check_texts(texts, sample, str(store.path))
    return [i for i, _ in texts]
