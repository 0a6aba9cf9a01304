"""What the admin page shows: progress per coder, agreement among the coders, the model's
agreement with each coder and with their majority (as `textcoder evaluate` computes it), and
the texts the coders disagree on."""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._exceptions import DataError
from ..codebook import Codebook, Variable
from ..evaluate.columns import label_column
from .agreement import Estimate, Reliability, majority, reliability
from .export import coder_codes
from .sample import Sample
from .store import DONE, SKIPPED, HumanStore, ItemState

if TYPE_CHECKING:
    from ..evaluate.metrics import Sample as EvalSample

MODEL_METRICS = ("accuracy", "macro_f1", "cohen_kappa", "krippendorff_alpha")
MAJORITY = "majority"
MIN_TEXTS = 10  # figures on fewer texts are shown greyed out: too few to read much into


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
    notes: dict[str, str]  # coder -> note, for the coders who wrote one
    unsure: list[str]  # the coders who marked the text unsure
    tied: dict[str, str]  # variable -> the admin's resolution ('' none yet), where coders tied


@dataclass(frozen=True)
class Summary:
    coders: list[str]
    progress: list[Progress]
    reliability: list[Reliability]
    model: list[ModelAgreement]
    disagreements: list[Disagreement]
    ties: dict[str, int]  # variable -> texts whose majority code is a tie
    resolved: dict[str, int]  # variable -> tied texts the admin has given a code


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
    resolved = store.resolutions()
    rel = [
        r
        for v in book.variables
        for r in reliability(v, by_var[v.name], coders, sample.ids, resamples=resamples, seed=seed)
    ]
    model = [
        m
        for v in book.variables
        if not v.multi and label_column(v.name) in sample.frame.columns
        for m in model_agreement(
            book, v, sample, by_var[v.name], coders, resolved.get(v.name, {}), resamples, seed
        )
    ]
    ties = {v.name: tied_texts(v, by_var[v.name], coders, sample.ids) for v in book.variables}
    return Summary(
        coders,
        progress,
        rel,
        model,
        disagreements(book, sample, by_var, coders, states, ties, resolved),
        {name: len(items) for name, items in ties.items()},
        {name: len(set(items) & set(resolved.get(name, {}))) for name, items in ties.items()},
    )


def tied_texts(
    var: Variable, codes: dict[str, dict[str, str]], coders: list[str], ids: list[str]
) -> list[str]:
    """The texts the coders tie on (no majority code)."""
    return [
        i for i in ids if majority(var, [codes[c][i] for c in coders if i in codes.get(c, {})])[1]
    ]


def model_agreement(
    book: Codebook,
    var: Variable,
    sample: Sample,
    codes: dict[str, dict[str, str]],
    coders: list[str],
    resolved: dict[str, str],
    resamples: int,
    seed: int,
) -> list[ModelAgreement]:
    """The model against each coder, then against the majority (ties left out): the sample
    read as `textcoder evaluate` reads a coded table, the figures from its metric functions
    and its bootstrap."""
    from ..evaluate import from_frame
    from ..evaluate.bootstrap import bootstrap

    golds = {c: [codes.get(c, {}).get(i, "") for i in sample.ids] for c in coders}
    given = [[codes[c][i] for c in coders if i in codes.get(c, {})] for i in sample.ids]
    golds[MAJORITY] = [
        "" if len(g) < 2 else resolved.get(i, "") if tie else code
        for i, g in zip(sample.ids, given, strict=True)
        for code, tie in [majority(var, g)]
    ]
    gold_col = "\x00gold"  # a name no table column has
    out = []
    for against, gold in golds.items():
        frame = sample.frame.assign(**{gold_col: gold})
        try:
            coded = from_frame(frame, gold_col, codebook=book, variable=var.name)
        except DataError:
            continue  # no text coded yet, or none the model coded
        point = agreement_metrics(coded.sample)
        ci = bootstrap(coded.sample, agreement_metrics, resamples=resamples, seed=seed)
        metrics = {k: _estimate(point[k], ci.get(k)) for k in MODEL_METRICS}
        out.append(ModelAgreement(var.name, against, len(coded.sample.gold), metrics))
    return out


def agreement_metrics(s: EvalSample) -> dict[str, float]:
    """`textcoder evaluate`'s agreement figures on one (re)sample; nan where undefined."""
    from sklearn.exceptions import UndefinedMetricWarning

    from ..evaluate import metrics as m

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            alpha = m.krippendorff_alpha(s)
        except (ValueError, ZeroDivisionError):
            alpha = float("nan")
        return {
            "accuracy": m.accuracy(s),
            "macro_f1": m.f1(s, "macro"),
            "cohen_kappa": m.cohen_kappa(s),
            "krippendorff_alpha": alpha,
        }


def _estimate(value: float, ci: tuple[float, float] | None) -> Estimate:
    def num(x: float | None) -> float | None:
        return None if x is None or x != x else float(x)

    lo, hi = ci if ci is not None else (None, None)
    return Estimate(num(value), num(lo), num(hi))


def disagreements(
    book: Codebook,
    sample: Sample,
    by_var: dict[str, dict[str, dict[str, str]]],
    coders: list[str],
    states: dict[str, dict[str, ItemState]],
    ties: dict[str, list[str]],
    resolved: dict[str, dict[str, str]],
) -> list[Disagreement]:
    """The texts where two coders gave one variable different codes, in sample order, with
    the coders' notes and unsure marks on them."""
    tie_sets = {v: set(items) for v, items in ties.items()}
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
            marks = {c: states.get(c, {}).get(item, ItemState()) for c in coders}
            notes = {c: m.note for c, m in marks.items() if m.note}
            unsure = [c for c, m in marks.items() if m.unsure]
            tied = {v: resolved.get(v, {}).get(item, "") for v in differ if item in tie_sets[v]}
            out.append(Disagreement(item, sample.text(item), differ, notes, unsure, tied))
    return out


class LiveSummary:
    """The admin page's figures, computed in a background thread when the codes have changed
    since the last computation, so the page never waits long for a bootstrap."""

    def __init__(self, compute: Callable[[], Summary], version: Callable[[], str]) -> None:
        self._compute = compute
        self._version = version
        self._cond = threading.Condition()
        self._latest: tuple[str, Summary] | None = None
        self._running = False
        self.error: str | None = None

    def get(self, wait: float) -> tuple[Summary | None, bool]:
        """The latest summary and whether it is of the codes as they are now, waiting up to
        `wait` seconds for a computation under way."""
        version = self._version()

        def fresh() -> bool:
            return self._latest is not None and self._latest[0] == version

        with self._cond:
            if not fresh() and not self._running:
                self._running = True
                threading.Thread(target=self._run, args=(version,), daemon=True).start()
            self._cond.wait_for(lambda: fresh() or not self._running, timeout=wait)
            return (self._latest[1] if self._latest else None), fresh()

    def _run(self, version: str) -> None:
        result: Summary | None = None
        try:
            result = self._compute()
        except Exception as exc:  # shown on the page; the server keeps serving coders
            self.error = f"{type(exc).__name__}: {exc}"
        with self._cond:
            if result is not None:
                self._latest, self.error = (version, result), None
            self._running = False
            self._cond.notify_all()
