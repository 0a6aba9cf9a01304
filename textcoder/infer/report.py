"""The evaluation report's prevalence section: the four methods' estimates per category in
a table, and their intervals in one plot (matplotlib, embedded as PNG)."""

from __future__ import annotations

import html
from typing import Any

from .._exceptions import TextcoderError
from ..evaluate.load import Coded
from .inference import estimate
from .table import Source, load

COLOURS = {"model": "tab:red", "human": "tab:green", "ppi": "tab:blue", "dsl": "tab:purple"}


def prevalence_section(coded: Coded) -> str:
    """The section for one coded file (its whole table, human codes from the gold column);
    empty for the raw twin of a calibrated file, a note where it cannot be computed."""
    if coded.path is None or coded.name.endswith(" (raw)"):
        return ""
    try:
        source = Source(
            gold=coded.gold_column, gold_file=coded.gold_file, id_column=coded.id_column
        )
        prep = load(coded.path, source, known=coded.variable)
        result = estimate(prep)
    except TextcoderError as exc:
        return f'<h3>Prevalence</h3><p class="note">Not computed: {html.escape(str(exc))}</p>'
    notes = "".join(f'<p class="note">{html.escape(w)}</p>' for w in result["warnings"])
    return f"""
<h3>Prevalence: model codes corrected by the human codes</h3>
<p class="note">{result["n_coded"]} human codes of {result["n_total"]} rows; {result["level"]:.0%}
intervals. <code>model</code>: the model alone; <code>human</code>: the human codes alone,
weighted by sample_prob; <code>ppi</code>: PPI++ (its inverse-probability-weighted form where sample_prob differs);
<code>dsl</code>: design-based supervised learning (valid for any known sample_prob; its
prediction of the human code: {html.escape(result["dsl_prediction"])}).</p>
{notes}
{prevalence_table(result)}
<img class="prevalence" alt="prevalence intervals" src="data:image/png;base64,{interval_plot(result)}">"""


def prevalence_table(result: dict[str, Any]) -> str:
    """Categories in rows, methods in columns, `estimate [low, high]` in the cells."""
    methods = result["methods"]
    head = "".join(f"<th>{html.escape(m)}</th>" for m in methods)

    def cell(c: dict[str, Any]) -> str:
        if c["estimate"] is None:
            return "n/a"
        mark = " (clipped to [0, 1])" if c.get("clipped") else ""
        return f"{c['estimate']:.3f} [{c['ci_low']:.3f}, {c['ci_high']:.3f}]{mark}"

    rows = "".join(
        f"<tr><th>{html.escape(lab)}</th>"
        + "".join(f'<td class="num">{cell(cells[m])}</td>' for m in methods)
        + "</tr>"
        for lab, cells in result["prevalence"].items()
    )
    return f'<table id="prevalence"><tr><th>category</th>{head}</tr>{rows}</table>'


def interval_plot(result: dict[str, Any]) -> str:
    """Each category's four intervals, one row per method, as a base64 PNG."""
    import matplotlib.pyplot as plt

    from ..evaluate.plots import png

    cats = list(result["prevalence"])
    methods = result["methods"]
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.25 * len(cats) * (len(methods) + 1)))
    ticks, names = [], []
    for i, lab in enumerate(cats):
        for k, m in enumerate(methods):
            c = result["prevalence"][lab][m]
            y = i * (len(methods) + 1) + k
            if c["estimate"] is not None:
                lo, hi = c["ci_low"], c["ci_high"]
                ax.errorbar(
                    c["estimate"],
                    y,
                    xerr=[[c["estimate"] - lo], [hi - c["estimate"]]],
                    fmt="o",
                    color=COLOURS.get(m, "black"),
                    capsize=3,
                    label=m if i == 0 else None,
                )
        ticks.append(i * (len(methods) + 1) + (len(methods) - 1) / 2)
        names.append(lab)
    ax.set_yticks(ticks, names)
    ax.invert_yaxis()
    ax.set_xlabel(f"prevalence ({result['level']:.0%} interval)")
    ax.legend(fontsize=8, loc="best")
    ax.grid(axis="x", alpha=0.3)
    return png(fig)
