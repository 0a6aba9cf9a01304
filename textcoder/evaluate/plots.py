"""The report's figures, drawn with matplotlib (Agg, no display) and returned as base64 PNG,
so the HTML file needs nothing beside it."""

from __future__ import annotations

import base64
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from .load import Coded


def png(fig: Figure) -> str:
    """The figure as a base64 PNG string, the figure closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def confusion_heatmap(result: dict[str, Any]) -> str:
    """The confusion matrix, gold in rows, counts written in the cells."""
    cm = np.asarray(result["confusion_matrix"]["matrix"])
    labels = result["confusion_matrix"]["labels"]
    size = 1.2 + 0.9 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    top = cm.max() if cm.size else 0
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(
                j,
                i,
                str(cm[i, j]),
                ha="center",
                va="center",
                color="white" if top and cm[i, j] > top / 2 else "black",
            )
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(f"confusion matrix: {result['name']}")
    return png(fig)


def reliability_diagram(result: dict[str, Any]) -> str:
    """Accuracy against mean confidence of the top category, per bin; marker area ~ texts."""
    rel = result["reliability"]
    conf = np.asarray(rel["mean_confidence"])
    acc = np.asarray(rel["accuracy"])
    count = np.asarray(rel["count"])
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    if conf.size:
        ax.plot(conf, acc, color="tab:blue", lw=1)
        ax.scatter(conf, acc, s=20 + 200 * count / count.max(), color="tab:blue", label="bins")
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("confidence (top category's probability)")
    ax.set_ylabel("accuracy")
    ece = result["ece"]["value"]
    ax.set_title(
        f"reliability: {result['name']}" + (f" (ECE {ece:.3f})" if ece is not None else "")
    )
    ax.legend(loc="upper left", fontsize=8)
    return png(fig)


def probability_histograms(coded: Coded) -> str:
    """For each category, its probability over texts, split by whether gold is that category."""
    s = coded.sample
    labels = coded.labels
    fig, axes = plt.subplots(1, len(labels), figsize=(3.2 * len(labels), 2.8), squeeze=False)
    bins = np.linspace(0, 1, 21)
    for i, (ax, lab) in enumerate(zip(axes[0], labels, strict=True)):
        p = s.probs[:, i]
        ax.hist(p[s.gold == i], bins=bins, alpha=0.7, label=f"gold {lab}", color="tab:green")
        ax.hist(p[s.gold != i], bins=bins, alpha=0.5, label="gold other", color="tab:red")
        ax.set_title(f"P({lab})")
        ax.set_xlabel("probability")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("texts")
    fig.tight_layout()
    return png(fig)
