"""Two coders in a real browser (Playwright driving Debian's Chromium): one codes ten texts with
the mouse, one with the keys, each reloading in the middle; the export holds exactly their
choices and the admin page's alpha equals `krippendorff.alpha` on the exported columns."""

from __future__ import annotations

import contextlib
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import krippendorff
import numpy as np
import pandas as pd
import pytest

from .conftest import EXAMPLES, textcoder
from .gated_proxy import GatedProxy
from .test_annotate import BOOK, AnnotateProcess, coded_sample, item_at

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
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            watch(page, server.base, problems)
            page.goto(server.url("ann"))
            page.wait_for_selector("#codeform")
            item = page.get_attribute("input[name=item]", "value")
            tops = page.eval_on_selector_all(
                "fieldset.ordinal label.choice",
                "els => els.map(e => e.getBoundingClientRect().top)",
            )
            assert len(tops) == 5 and len(set(tops)) == 1  # the scale on one row, in order
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


def launch(pw: Any) -> Any:
    return pw.chromium.launch(executable_path=chromium(), headless=True, args=list(ARGS))


def test_a_forged_post_from_another_loopback_port_is_refused(tmp_path: Path) -> None:
    """A page of another app on 127.0.0.1 (the same site to the browser: SameSite cookies
    travel) posts to the coder's page with a form (holding even the right form token) and
    with a no-cors fetch; neither changes the coder's record."""
    sync_api = playwright()
    sample = coded_sample(tmp_path / "sample.csv", n=3)
    args = (str(sample), "-c", str(BOOK), "--coders", "alice", "--id-column", "id")
    with AnnotateProcess(*args, "--store", str(tmp_path / "s.sqlite")) as server:
        alice = server.client("alice")
        item = item_at(alice, "alice", 1)
        target = f"{server.base}/coder/alice/1"
        evil = EVIL_PAGE.format(target=target, item=item, csrf=alice.csrf())
        with serve_page(evil) as evil_url, sync_api.sync_playwright() as pw:
            browser = launch(pw)
            page = browser.new_page()
            page.goto(server.url("alice"))  # the coder is signed in (the cookie is set)
            page.wait_for_selector("#codeform")
            responses: list[Any] = []
            page.on("response", lambda r: responses.append(r) if r.url == target else None)
            page.goto(evil_url)  # fetches, then submits its form
            page.wait_for_url(target)
            page.wait_for_load_state()
            said = page.inner_text("body")
            browser.close()
        assert [r.status for r in responses] == [403, 403]  # the fetch's and the form's
        assert said.startswith("403: a request from another site (same-site)")
        shown = alice.get("/coder/alice/1").text
    assert "FORGED" not in shown and " checked" not in shown


EVIL_PAGE = """<!DOCTYPE html><html><body>
<form id="f" method="post" action="{target}">
<input name="item" value="{item}"><input name="v:sentiment" value="negative">
<input name="note" value="FORGED"><input name="action" value="save"><input name="csrf" value="{csrf}">
</form>
<script>
fetch("{target}", {{method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "text/plain"}},
  body: "item={item}&v:sentiment=positive&note=FORGED&action=save"}})
  .finally(function () {{ document.getElementById("f").submit(); }});
</script></body></html>"""


@contextmanager
def serve_page(html: str) -> Iterator[str]:
    """Another app on another loopback port, serving one page."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_failed_save_is_shown_kept_retried_and_blocks_moving_on(tmp_path: Path) -> None:
    sync_api = playwright()
    sample = coded_sample(tmp_path / "sample.csv", n=3)
    store = tmp_path / "s.sqlite"
    args = (str(sample), "-c", str(BOOK), "--coders", "alice", "--id-column", "id")
    args = (*args, "--store", str(store))
    server = AnnotateProcess(*args).start()
    port = server.port
    try:
        with sync_api.sync_playwright() as pw:
            browser = launch(pw)
            page = browser.new_page()
            page.goto(server.url("alice"))
            page.wait_for_selector("#codeform")
            url = page.url
            item = page.get_attribute("input[name=item]", "value")
            server.stop()  # the server goes away
            page.click("label.choice:has(input[value=negative])")
            page.wait_for_selector("#status.error")
            assert "Not saved" in page.inner_text("#status")
            assert page.is_checked("input[value=negative]")  # the choice stays on the page
            page.keyboard.press("Enter")
            page.click("#skip", force=True)  # moving on is blocked until it is saved
            assert page.url == url and page.is_visible("#retry")
            server = AnnotateProcess(*args, port=port).start()  # back, the same URL
            with contextlib.suppress(sync_api.Error):  # unless it has retried by itself
                page.evaluate("() => { const b = document.getElementById('retry'); if (!b.hidden) b.click(); }")  # fmt: skip
            page.wait_for_url(lambda u: u != url)
            page.wait_for_selector("#codeform")
            assert page.get_attribute("input[name=item]", "value") != item
            browser.close()
        alice = server.client("alice")
        pos = next(p for p in (1, 2, 3) if item_at(alice, "alice", p) == item)
        assert 'value="negative" checked' in alice.get(f"/coder/alice/{pos}").text
    finally:
        server.stop()


def test_a_slow_link_locks_the_page_until_the_next_text(tmp_path: Path) -> None:
    """Through a proxy holding the answers: `1` then `2` codes the current text once and
    leaves the next one alone; the page says "saving..." and takes no input meanwhile. A note
    typed and reloaded at once is kept; `u` marks unsure before the choice."""
    sync_api = playwright()
    sample = coded_sample(tmp_path / "sample.csv", n=3)
    args = (str(sample), "-c", str(BOOK), "--coders", "alice", "--id-column", "id")
    with AnnotateProcess(*args, "--store", str(tmp_path / "s.sqlite")) as server:
        with GatedProxy(server.port) as proxy, sync_api.sync_playwright() as pw:
            browser = launch(pw)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{proxy.port}/coder/alice?token={server.tokens['alice']}")
            page.wait_for_selector("#codeform")
            first = page.get_attribute("input[name=item]", "value")
            page.keyboard.press("n")
            page.keyboard.type("irony?")  # then reloaded before leaving the box
            page.reload()
            page.wait_for_selector("#codeform")
            assert page.input_value("textarea[name=note]") == "irony?"
            page.keyboard.press("u")
            url = page.url
            proxy.hold()
            page.keyboard.press("1")
            page.keyboard.press("2")
            page.click("label.choice:has(input[value=neutral])", force=True)
            assert page.inner_text("#status") == "saving..."
            assert page.is_checked("input[value=positive]")
            assert not page.is_checked("input[value=negative]")
            assert page.evaluate("document.querySelector('fieldset.variable').inert")
            proxy.release()
            page.wait_for_url(lambda u: u != url)
            page.wait_for_selector("#codeform")
            second = page.get_attribute("input[name=item]", "value")
            assert second != first and page.locator("input:checked").count() == 0
            browser.close()
        alice = server.client("alice")
        pages = {item_at(alice, "alice", p): alice.get(f"/coder/alice/{p}").text for p in (1, 2, 3)}
    assert 'value="positive" checked' in pages[first] and "irony?" in pages[first]
    assert 'name="unsure" value="1" checked' in pages[first]
    assert " checked" not in pages[second]
