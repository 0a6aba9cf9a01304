"""The robustness check in HTML: a section (tables, the texts that flip most, a plot of
category shares per variant) that stands alone or joins the evaluation report."""

from __future__ import annotations

import html
from typing import Any

from ..scoring import INVALID


def _e(x: Any) -> str:
    return html.escape(str(x))


def _f(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}%" if pct else f"{x:.3f}"


def shares_plot(fig: dict[str, Any]) -> str:
    """Stacked bars: each variant's category shares (base first), as a base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ..evaluate.plots import png

    names = [v["variant"] for v in fig["variants"]]
    cats = [*fig["categories"], INVALID]
    data = np.array([[v["shares"][c] for c in cats] for v in fig["variants"]])
    plot, ax = plt.subplots(figsize=(1.6 + 0.55 * len(names), 3.6))
    bottom = np.zeros(len(names))
    for j, cat in enumerate(cats):
        if cat == INVALID and not data[:, j].any():
            continue
        ax.bar(range(len(names)), data[:, j], bottom=bottom, label=cat)
        bottom += data[:, j]
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right")
    ax.set_ylabel("share of texts")
    ax.set_ylim(0, 1)
    ax.set_title(f"{fig['variable']}: category shares per variant")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return png(plot)


def variable_section(fig: dict[str, Any], gold: bool) -> str:
    """One variable's table of variants, its alpha, plot and most-flipping texts."""
    cats = fig["categories"]
    head = "<tr><th>variant</th><th>kind</th><th>what changed</th><th>agreement</th>"
    head += "<th>Cohen's kappa</th><th>flip share</th>" + ("<th>macro-F1</th>" if gold else "")
    head += "".join(f"<th>{_e(c)} (shift)</th>" for c in cats) + "</tr>"
    rows = []
    for v in fig["variants"]:
        cells = [_e(v["variant"]), _e(v["kind"]), _e(v["about"])]
        nums = [_f(v["agreement"], True), _f(v["cohen_kappa"]), _f(v["flip_share"], True)]
        if gold:
            nums.append(_f(v.get("macro_f1")))
        nums += [f"{100 * v['shares'][c]:.1f}% ({100 * v['shifts'][c]:+.1f})" for c in cats]
        rows.append(
            "<tr>"
            + "".join(f"<td>{c}</td>" for c in cells)
            + "".join(f'<td class="num">{n}</td>' for n in nums)
            + "</tr>"
        )
    flips = "".join(
        f"<tr><td>{_e(t['id'])}</td><td>{_e(t['text'])}</td><td class='num'>{t['flips']}</td>"
        f"<td>{_e(', '.join(f'{k}: {c}' for k, c in t['codes'].items()))}</td></tr>"
        for t in fig["most_flipping"]
    )
    level = fig["scale"]
    return (
        f"<h3>{_e(fig['variable'])}</h3>"
        f"<p>Krippendorff's alpha across all variants ({level}): "
        f"<b>{_f(fig['krippendorff_alpha'])}</b> on {fig['n_texts']} texts.</p>"
        f"<table>{head}{''.join(rows)}</table>"
        f'<img alt="category shares per variant" src="data:image/png;base64,{shares_plot(fig)}">'
        "<h4>Texts that flip most</h4>"
        f"<table><tr><th>id</th><th>text</th><th>flips</th><th>codes</th></tr>{flips}</table>"
    )


def robustness_section(figures: dict[str, Any]) -> str:
    """The whole check as one HTML section."""
    gold = any("macro_f1" in v for f in figures["variables"] for v in f["variants"])
    notes = "".join(f"<li>{_e(n)}</li>" for n in figures["notes"])
    body = "".join(variable_section(f, gold) for f in figures["variables"])
    return (
        '<section id="robustness"><h2>Robustness to prompt variants</h2>'
        f"<p class='note'>{figures['n_texts']} texts (seed {figures['seed']}), engine "
        f"{_e(figures['engine'])}, scoring {_e(figures['scoring'])}; agreement, kappa and "
        "flips against the codebook as written (<code>base</code>).</p>"
        + (f"<ul class='note'>{notes}</ul>" if notes else "")
        + body
        + "</section>"
    )


def write_report(figures: dict[str, Any], path: str) -> None:
    """A self-contained HTML file with the robustness section (nothing fetched)."""
    from pathlib import Path

    from ..evaluate.report import CSS

    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>textcoder robustness</title>"
        f"<style>{CSS}</style></head><body><h1>textcoder robustness check</h1>"
        f"{robustness_section(figures)}</body></html>\n"
    )
    Path(path).write_text(page, encoding="utf-8")
