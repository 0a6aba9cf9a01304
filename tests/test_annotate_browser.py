"""Two coders in a real browser (Playwright driving Debian's Chromium): one codes ten texts with
the mouse, one with the keys, each reloading in the middle; the export holds exactly their
choices and the admin page's alpha equals `krippendorff.alpha` on the exported columns."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import krippendorff
import numpy as np
import pandas as pd
import pytest

from .conftest import EXAMPLES, textcoder
from .test_annotate import BOOK, AnnotateProcess

LABELS = ["positive", "negative", "neutral"]  # the codebook's order: keys 1, 2, 3
N = 10
EVIL = "<script>document.title = 'pwned'</script> 5 < 6 & <b>so on</b>"  # text id 7
ARGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-extensions", "--no-first-run", "--disable-dev-shm-usage")  # fmt: skip


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return exe


def playwright() -> Any:
    try:
        from playwright import sync_api
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("playwright is not installed (it is in the dev extra)")
        pytest.skip("playwright is not installed (pip install -e .[dev])")
    return sync_api


def choice(coder: str, item: str) -> str:
    """What each coder picks: they agree on most texts and differ on three."""
    k = int(item)
    if coder == "bob" and k in (2, 5, 9):
        k += 1
    return LABELS[k % 3]


def watch(page: Any, base: str, problems: list[str]) -> None:
    """Record console errors (a CSP violation is one) and requests leaving the app."""
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("request", lambda r: None if r.url.startswith(base) else problems.append(r.url))
    page.on(
        "response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None
    )


def code_texts(page: Any, coder: str, use_keys: bool, shot: Path | None) -> dict[str, str]:
    """Code every text the coder is shown, reloading after the fifth; returns id -> code."""
    chosen: dict[str, str] = {}
    for n in range(N):
        page.wait_for_selector("#codeform")
        assert page.inner_text("#progress") == f"{n} / {N}"
        item = page.get_attribute("input[name=item]", "value")
        label = choice(coder, item)
        if item == "7":  # shown as text, not run
            assert page.inner_text("#text") == EVIL and "pwned" not in page.title()
        if n == 5:
            page.reload()
            assert page.get_attribute("input[name=item]", "value") == item  # the same text
        if shot is not None and n == 3:
            page.hover(f"label.choice:has(input[value={label}])")
            page.screenshot(path=str(shot), full_page=True)
        url = page.url
        if n == 1 and not use_keys:  # a note and the unsure mark, then the choice
            page.fill("textarea[name=note]", "irony?")
            page.check("input[name=unsure]")
        if use_keys:
            page.keyboard.press(str(LABELS.index(label) + 1))
        else:
            page.click(f"label.choice:has(input[value={label}])")
        page.wait_for_url(lambda u, url=url: u != url)
        chosen[item] = label
    page.wait_for_selector("text=Every text is coded")
    return chosen


def test_two_coders_in_chromium(tmp_path: Path) -> None:
    exe = chromium()
    sync_api = playwright()
    sample = tmp_path / "sample.csv"
    tweets = pd.read_csv(EXAMPLES / "tweets.csv").head(N)
    tweets.loc[tweets["id"] == 7, "text"] = EVIL
    tweets.to_csv(sample, index=False)
    store = tmp_path / "codes.sqlite"
    args = (str(sample), "-c", str(BOOK), "--coders", "alice,bob", "--id-column", "id")
    shot = tmp_path / "annotate-coder.png"
    problems: list[str] = []
    with AnnotateProcess(*args, "--store", str(store), "--resamples", "50") as server:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, headless=True, args=list(ARGS))
            chosen = {}
            for coder, keys in (("alice", False), ("bob", True)):
                context = browser.new_context(viewport={"width": 1000, "height": 820})
                page = context.new_page()
                watch(page, server.base, problems)
                page.goto(server.url(coder))
                chosen[coder] = code_texts(page, coder, keys, shot if coder == "alice" else None)
                context.close()
            context = browser.new_context()
            page = context.new_page()
            watch(page, server.base, problems)
            page.goto(server.url(""))
            cell = page.locator("#reliability tr[data-variable=sentiment] td.alpha")
            admin_alpha = float(cell.get_attribute("data-value"))
            disagree = (
                page.inner_text("#disagreements") if page.locator("#disagreements").count() else ""
            )
            browser.close()
        out = tmp_path / "codes.csv"
        proc = textcoder("annotate", *args, "--store", str(store), "--export", str(out))
        assert proc.returncode == 0, proc.stderr
    assert not problems, problems
    codes = pd.read_csv(out, dtype=str, keep_default_na=False)
    for coder in ("alice", "bob"):
        assert dict(zip(codes["id"], codes[f"sentiment_by_{coder}"], strict=True)) == chosen[coder]
    assert (codes["note_by_alice"] == "irony?").sum() == 1
    assert (codes["unsure_by_alice"] == "True").sum() == 1
    data = [[LABELS.index(v) for v in codes[f"sentiment_by_{c}"]] for c in ("alice", "bob")]
    expect = krippendorff.alpha(
        reliability_data=np.asarray(data, dtype=float),
        level_of_measurement="nominal",
        value_domain=[0, 1, 2],
    )
    assert admin_alpha == pytest.approx(expect, abs=1e-12)
    assert sum(1 for i in chosen["alice"] if chosen["alice"][i] != chosen["bob"][i]) == 3
    assert disagree.count("sentiment:") == 6  # three texts, one cell per coder
    assert shot.is_file() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_keys_walk_through_several_variables(tmp_path: Path) -> None:
    """Headlines: topic (nominal), tone (ordinal), frames (multi-label). Keys choose in the
    highlighted variable and move on to the next; in frames they toggle; Enter saves."""
    exe = chromium()
    sync_api = playwright()
    sample = tmp_path / "h.csv"
    pd.read_csv(EXAMPLES / "headlines.csv").head(2).to_csv(sample, index=False)
    store = tmp_path / "h.sqlite"
    args = (
        str(sample),
        "-c",
        str(EXAMPLES / "headlines.yaml"),
        "--coders",
        "ann",
        "--id-column",
        "id",
    )
    problems: list[str] = []
    with AnnotateProcess(*args, "--store", str(store), "--resamples", "10") as server:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=exe, headless=True, args=list(ARGS))
            page = browser.new_page()
            watch(page, server.base, problems)
            page.goto(server.url("ann"))
            page.wait_for_selector("#codeform")
            item = page.get_attribute("input[name=item]", "value")
            assert page.get_attribute("fieldset.current", "data-variable") == "topic"
            page.keyboard.press("2")  # economy, then tone is highlighted
            assert page.get_attribute("fieldset.current", "data-variable") == "tone"
            page.keyboard.press("1")  # very negative
            for key in ("1", "4", "2", "2"):  # frames: conflict, responsibility (2 on, off)
                page.keyboard.press(key)
            url = page.url
            page.keyboard.press("Enter")
            page.wait_for_url(lambda u: u != url)
            browser.close()
        out = tmp_path / "codes.csv"
        proc = textcoder("annotate", *args, "--store", str(store), "--export", str(out))
        assert proc.returncode == 0, proc.stderr
    assert not problems, problems
    codes = pd.read_csv(out, dtype=str, keep_default_na=False).set_index("id").loc[item]
    assert (codes["topic_by_ann"], codes["tone_by_ann"]) == ("economy", "very negative")
    assert codes["frames_by_ann"] == "conflict;responsibility"
