"""The HTML report: one file, plots embedded as base64 PNG, no script and nothing fetched,
so it opens offline and can be attached to a paper's supplement."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import numpy as np

from .._version import __version__
from ..infer.report import prevalence_section
from ..output import INVALID
from .compare import comparison_rows
from .load import Coded
from .plots import confusion_heatmap, probability_histograms, reliability_diagram

DISAGREEMENTS = 20

CSS = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; vertical-align: top; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
img { max-width: 100%; }
.figs { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 0.85em; }
.note { color: #555; font-size: 0.9em; }
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def headline_table(results: Sequence[dict[str, Any]]) -> str:
    head = "".join(f"<th>{_e(r['name'])}</th>" for r in results)
    body = "".join(
        f"<tr><th>{_e(name)}</th>"
        + "".join(f'<td class="num">{_e(c)}</td>' for c in cells)
        + "</tr>"
        for name, cells in comparison_rows(results)
    )
    return f'<table id="headline"><tr><th>metric</th>{head}</tr>{body}</table>'


def per_category_table(result: dict[str, Any]) -> str:
    def cell(est: dict[str, Any]) -> str:
        v = est["value"]
        if v is None:
            return "n/a"
        lo, hi = est["ci_low"], est["ci_high"]
        return f"{v:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None else f"{v:.3f}"

    rows = "".join(
        f"<tr><th>{_e(lab)}</th>"
        + "".join(f'<td class="num">{cell(pc[k])}</td>' for k in ("precision", "recall", "f1"))
        + f'<td class="num">{pc["support"]}</td></tr>'
        for lab, pc in result["per_category"].items()
    )
    return (
        "<table><tr><th>category</th><th>precision</th><th>recall</th><th>F1</th>"
        f"<th>support</th></tr>{rows}</table>"
    )


def disagreements(coded: Coded, k: int = DISAGREEMENTS) -> str:
    """The `k` texts where the model was most confident and the human disagreed."""
    s = coded.sample
    labels = [*coded.labels, INVALID]
    wrong = np.flatnonzero(s.pred != s.gold)
    if wrong.size == 0:
        return "<p>No disagreements.</p>"
    conf = np.array(
        [s.probs[i, s.pred[i]] if s.pred[i] < s.n_categories else s.probs[i, -1] for i in wrong]
    )
    top = wrong[np.argsort(-np.nan_to_num(conf, nan=0.0), kind="stable")][:k]
    rows = "".join(
        f"<tr><td>{_e(coded.ids[i])}</td><td>{_e(coded.texts[i])}</td>"
        f"<td>{_e(labels[s.gold[i]])}</td><td>{_e(labels[s.pred[i]])}</td>"
        f'<td class="num">{_p(s.probs[i, s.pred[i]] if s.pred[i] < s.n_categories else s.probs[i, -1])}</td>'
        f'<td class="num">{_p(s.probs[i, s.gold[i]])}</td></tr>'
        for i in top
    )
    return (
        "<table><tr><th>id</th><th>text</th><th>gold</th><th>predicted</th>"
        f"<th>P(predicted)</th><th>P(gold)</th></tr>{rows}</table>"
    )


def _p(x: float) -> str:
    """A probability, or n/a for a table of hard labels."""
    return "n/a" if x != x else f"{x:.3f}"


def manifest_section(coded: Coded) -> str:
    m = coded.manifest
    if not m:
        return '<p class="note">No manifest was found beside this file.</p>'
    keys = ("model", "backend", "scoring", "parameters", "codebook", "system_fingerprint")
    rows = "".join(
        f"<tr><th>{_e(k)}</th><td><code>{_e(json.dumps(m[k], ensure_ascii=False) if isinstance(m[k], dict | list) else m[k])}</code></td></tr>"
        for k in keys
        if k in m
    )
    full = _e(json.dumps(m, indent=2, ensure_ascii=False))
    return (
        f"<table>{rows}</table><details><summary>full manifest</summary><pre>{full}</pre></details>"
    )


def histograms(coded: Coded) -> str:
    if not coded.sample.has_probs:
        return '<p class="note">This table has no probability columns.</p>'
    return (
        '<img class="histograms" alt="probability histograms" '
        f'src="data:image/png;base64,{probability_histograms(coded)}">'
    )


def file_section(coded: Coded, result: dict[str, Any], n: int) -> str:
    left = (
        f"{result['n']} texts evaluated of {result['n_rows']} rows; left out: "
        f"{result['n_failed']} failed, {result['n_missing_gold']} without a gold code. "
        f"Krippendorff's alpha is {_e(result['krippendorff_alpha'].get('level', 'nominal'))}."
    )
    notes = "".join(f'<p class="note">{_e(note)}</p>' for note in coded.notes)
    return f"""
<section id="file-{n}">
<h2>{_e(coded.name)}</h2>
<p class="note">{_e(left)}</p>{notes}
<h3>Per category</h3>
{per_category_table(result)}
<div class="figs">
<figure><img class="confusion" alt="confusion matrix" src="data:image/png;base64,{confusion_heatmap(result)}"></figure>
<figure><img class="reliability" alt="reliability diagram" src="data:image/png;base64,{reliability_diagram(result)}"></figure>
</div>
<h3>Probabilities per category</h3>
{histograms(coded)}
{prevalence_section(coded)}
<h3>The {DISAGREEMENTS} most confident disagreements</h3>
{disagreements(coded)}
<h3>Manifest</h3>
{manifest_section(coded)}
</section>"""


def render_report(evaluated: Sequence[tuple[Coded, dict[str, Any]]]) -> str:
    """The whole report as one HTML string."""
    results = [r for _, r in evaluated]
    first = results[0]
    title = f"textcoder evaluation: {first['variable']} vs. {first['gold_column']}"
    boot = first["bootstrap"]
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sections = "".join(file_section(c, r, i) for i, (c, r) in enumerate(evaluated))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{CSS}</style></head>
<body>
<h1>{_e(title)}</h1>
<p class="note">textcoder {_e(__version__)}, {_e(when)}. Figures in brackets: {boot["level"]:.0%}
percentile bootstrap intervals over {boot["resamples"]} resamples of the texts (seed {boot["seed"]}).
Brier is the multiclass score over the categories and <code>other</code> (0 best, 2 worst); ECE uses
15 equal-width bins of the top category's probability.</p>
{headline_table(results)}
{sections}
</body></html>
"""
