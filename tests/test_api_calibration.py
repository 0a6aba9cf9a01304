"""One calibration behaviour for every way of coding: `code`, `code_texts`, `code_frame` and
`textcoder code` give the same calibrated labels and keep the model's own probabilities;
the closing summary counts every request sent (probes, content-free inputs) and the time
of the whole run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from textcoder import Codebook, Coder, UsageError

from .conftest import EXAMPLES, textcoder
from .flaky_server import FlakyServer

TEXTS = ["I loved the new Batman movie!", "I hate it", "The train leaves at 9."]


def test_code_code_texts_and_code_frame_calibrate_alike(
    sentiment_book: Codebook, local_backend: object
) -> None:
    coder = Coder(sentiment_book, backend=local_backend)  # type: ignore[arg-type]
    assert coder.calibrate == "content-free"  # the default with exact scoring
    listed = coder.code_texts(TEXTS, progress=False)
    framed = coder.code_frame(pd.DataFrame({"text": TEXTS}), progress=False)
    one = coder.code(TEXTS[0])
    assert [r.label for r in listed] == framed["sentiment"].tolist()
    for r, (_, row) in zip(listed, framed.iterrows(), strict=True):
        for lab, p in r.probs.items():
            assert p == pytest.approx(row[f"sentiment_p_{lab}"], abs=1e-9)
            assert r.raw_probs is not None
            assert r.raw_probs[lab] == pytest.approx(row[f"sentiment_rawp_{lab}"], abs=1e-9)
        assert r.label == max(r.probs, key=lambda k: r.probs[k])
    # content-free is a fixed correction: one text alone gets the same code
    assert one.label == listed[0].label
    assert one.probs == pytest.approx(listed[0].probs, abs=1e-9)
    # the model's own probabilities are what an uncalibrated coder gives
    plain = Coder(sentiment_book, backend=local_backend, calibrate="none")  # type: ignore[arg-type]
    raw = plain.code(TEXTS[0])
    assert raw.raw_probs is None
    assert raw.probs == pytest.approx(one.raw_probs, abs=1e-9)
    assert one.probs != pytest.approx(one.raw_probs, abs=1e-3)  # calibration moved them


def test_fit_without_human_codes_is_refused_before_coding(
    sentiment_book: Codebook, local_backend: object
) -> None:
    coder = Coder(sentiment_book, backend=local_backend, calibrate="fit")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="code_frame"):
        coder.code_texts(TEXTS, progress=False)


def test_summary_counts_content_free_requests(tmp_path: Path) -> None:
    data = tmp_path / "three.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(data, index=False)
    out = tmp_path / "three.coded.csv"
    book = str(EXAMPLES / "sentiment.yaml")
    proc = textcoder("code", str(data), "-c", book, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "coded 3 rows in" in proc.stderr and "(6 requests)" in proc.stderr  # 3 + 3 content-free
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    assert manifest["requests"] == 6 and manifest["calibration"]["method"] == "content-free"


def test_probe_requests_are_counted(sentiment_book: Codebook) -> None:
    with FlakyServer() as server:
        coder = Coder(sentiment_book, model="gpt-4o-mini", base_url=server.url, api_key="k")
        try:
            # the chat probes this stand-in logs (a default run asks no optional route)
            chat_probes = len(server.requests())
            assert chat_probes > 0 and coder.capabilities.probe_requests == chat_probes
            coder.code_texts(TEXTS, progress=False)
            assert coder.last_stats is not None
            assert coder.last_stats.requests == len(server.requests()) == chat_probes + 3
        finally:
            coder.close()


def test_digits_round_the_display_columns_only(tmp_path: Path) -> None:
    """`--digits` (default 4) rounds probabilities in the table written; `--digits 12` keeps
    more of the same stored answers (nothing is sent again)."""
    data = tmp_path / "two.csv"
    pd.DataFrame({"text": TEXTS[:2]}).to_csv(data, index=False)
    book = str(EXAMPLES / "sentiment.yaml")
    short, longer = tmp_path / "short.csv", tmp_path / "long.csv"
    store = str(tmp_path / "s.sqlite")
    args = [str(data), "-c", book, "--store", store, "--calibrate", "none"]
    assert textcoder("code", *args, "-o", str(short)).returncode == 0
    proc = textcoder("code", *args, "-o", str(longer), "--digits", "12")
    assert proc.returncode == 0 and "0 requests" in proc.stderr, proc.stderr
    a, b = pd.read_csv(short), pd.read_csv(longer)
    for col in ("sentiment_p_positive", "sentiment_confidence", "sentiment_entropy"):
        assert (a[col] == b[col].round(4)).all(), col
        assert (a[col] != b[col]).any(), col  # the longer one kept more digits
    bad = textcoder("code", *args, "-o", str(tmp_path / "x.csv"), "--digits", "-1")
    assert bad.returncode == 1 and "--digits" in bad.stderr
