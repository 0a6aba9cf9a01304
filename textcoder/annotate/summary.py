"""What the admin page shows: progress per coder, agreement among the coders, the model's
agreement with each coder and with their majority (as `textcoder evaluate` computes it), and
the texts the coders disagree on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .._exceptions import DataError
from ..codebook import Codebook, Variable
from ..evaluate.columns import label_column
from .agreement import Estimate, Reliability, majority, reliability
from .export import coder_codes
from .sample import Sample
from .store import DONE, SKIPPED, HumanStore

MODEL_METRICS = ("accuracy", "macro_f1", "cohen_kappa", "krippendorff_alpha")
MAJORITY = "majority"


@dataclass(frozen=True)
class Progress:
    coder: str
    assigned: int
    done: int
    skipped: int
    unsure: int


@dataclass(frozen=True)
class ModelAgreement:
    """The model's codes (the sample's label column) against one coder or the majority."""

    variable: str
    against: str
    n: int
    metrics: dict[str, Estimate]


@dataclass(frozen=True)
class Disagreement:
    item: str
    text: str
    codes: dict[str, dict[str, str]]  # variable -> coder -> code, where coders differ


@dataclass(frozen=True)
class Summary:
    coders: list[str]
    progress: list[Progress]
    reliability: list[Reliability]
    model: list[ModelAgreement]
    disagreements: list[Disagreement]


def summarise(
    book: Codebook,
    sample: Sample,
    store: HumanStore,
    assignment: dict[str, list[str]],
    *,
    resamples: int,
    seed: int,
) -> Summary:
    """Everything the admin page shows, from the store as it is now."""
    coders = list(assignment)
    states = store.all_states()
    progress = []
    for coder in coders:
        mine = states.get(coder, {})
        marks = [mine[i] for i in assignment[coder] if i in mine]
        progress.append(
            Progress(
                coder,
                len(assignment[coder]),
                sum(m.status == DONE for m in marks),
                sum(m.status == SKIPPED for m in marks),
                sum(m.unsure for m in marks),
            )
        )
    stored = store.all_codes()
    by_var = {v.name: coder_codes(v, stored.get(v.name, {}), states) for v in book.variables}
    rel = [
        r
        for v in book.variables
        for r in reliability(v, by_var[v.name], coders, sample.ids, resamples=resamples, seed=seed)
    ]
    model = [
        m
        for v in book.variables
        if not v.multi and label_column(v.name) in sample.frame.columns
        for m in model_agreement(book, v, sample, by_var[v.name], coders, resamples, seed)
    ]
    return Summary(coders, progress, rel, model, disagreements(book, sample, by_var, coders))


def model_agreement(
    book: Codebook,
    var: Variable,
    sample: Sample,
    codes: dict[str, dict[str, str]],
    coders: list[str],
    resamples: int,
    seed: int,
) -> list[ModelAgreement]:
    """The model against each coder, then against the majority (ties left out)."""
    from ..evaluate import evaluate, from_frame

    golds = {c: [codes.get(c, {}).get(i, "") for i in sample.ids] for c in coders}
    golds[MAJORITY] = [
        majority(var, [codes[c][i] for c in coders if i in codes.get(c, {})])[0] for i in sample.ids
    ]
    gold_col = "\x00gold"  # a name no table column has
    out = []
    for against, gold in golds.items():
        frame = sample.frame.assign(**{gold_col: gold})
        try:
            coded = from_frame(frame, gold_col, codebook=book, variable=var.name)
        except DataError:
            continue  # no text coded yet, or none the model coded
        result: dict[str, Any] = evaluate(coded, resamples=resamples, seed=seed)
        metrics = {
            k: Estimate(result[k]["value"], result[k]["ci_low"], result[k]["ci_high"])
            for k in MODEL_METRICS
        }
        out.append(ModelAgreement(var.name, against, int(result["n"]), metrics))
    return out


def disagreements(
    book: Codebook, sample: Sample, by_var: dict[str, dict[str, dict[str, str]]], coders: list[str]
) -> list[Disagreement]:
    """The texts where two coders gave one variable different codes, in sample order."""
    out = []
    for item in sample.ids:
        differ: dict[str, dict[str, str]] = {}
        for var in book.variables:
            given = {
                c: by_var[var.name][c][item] for c in coders if item in by_var[var.name].get(c, {})
            }
            if len(set(given.values())) > 1:
                differ[var.name] = given
        if differ:
            out.append(Disagreement(item, sample.text(item), differ))
    return out
