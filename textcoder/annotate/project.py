"""One annotation project: a codebook, a sample, its store, who codes what, and the tokens."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..codebook import Codebook
from .sample import Sample, assign, check_settings, load_sample
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
    """Load the sample, open (or create) its store and check it was made for this sample and
    these settings; `coders` None takes the coders the store knows (for an export)."""
    sample = load_sample(sample_path, text_column, id_column)
    store = HumanStore(store_path or default_store_path(sample_path))
    stored = store.meta("settings")
    if coders is None:
        coders = store.coders()
        if stored is not None:
            overlap, seed = stored["overlap"], stored["seed"]
    wanted = {"sample": sample.digest(), "overlap": overlap, "seed": seed, "coders": coders}
    check_settings(stored, wanted, str(store.path))
    if coders and stored != wanted:
        store.set_meta("settings", wanted)
    tokens = store.ensure_tokens(coders) if coders else {}
    return Annotation(
        book=book,
        sample=sample,
        store=store,
        assignment=assign(sample.ids, coders, overlap, seed) if coders else {},
        tokens=tokens,
        resamples=resamples,
        seed=seed,
    )
