"""The evaluation report's prevalence section: the table of the four methods and the plot."""

from __future__ import annotations

import base64
from pathlib import Path

from .conftest import textcoder
from .test_infer import LABELS, coded, with_gold

BOOK = "instructions: x\nvariables:\n  - name: sentiment\n    categories: [negative, neutral, positive]\n"


def test_report_has_prevalence_table_and_plot(tmp_path: Path) -> None:
    (tmp_path / "book.yaml").write_text(BOOK)
    with_gold(coded()).to_csv(tmp_path / "coded.csv", index=False)
    report = tmp_path / "report.html"
    run = textcoder(
        "evaluate",
        str(tmp_path / "coded.csv"),
        "--gold",
        "gold",
        "-c",
        str(tmp_path / "book.yaml"),
        "--resamples",
        "20",
        "--report",
        str(report),
    )
    assert run.returncode == 0, run.stderr
    page = report.read_text()
    table = page.split('<table id="prevalence">')[1].split("</table>")[0]
    for name in (*LABELS, "model", "human", "ppi", "dsl"):
        assert f">{name}<" in table
    img = page.split('class="prevalence"')[1].split('src="data:image/png;base64,')[1].split('"')[0]
    assert base64.b64decode(img).startswith(b"\x89PNG")
