"""`textcoder annotate` through HTTP against a real server on 127.0.0.1: blind pages, tokens
(403 elsewhere), validation against the codebook, escaping, restarts and concurrent coders
that lose nothing; the export, the majority code and agreement against `krippendorff` and
scikit-learn on fixed codes."""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

import httpx
import krippendorff
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, cohen_kappa_score

from textcoder import Codebook
from textcoder.annotate import HumanStore, export_frame, open_annotation, reliability
from textcoder.annotate.sample import assign
from textcoder.annotate.store import DONE, Save

from .conftest import EXAMPLES, ROOT, textcoder
from .servers import free_port

BOOK = EXAMPLES / "sentiment.yaml"
LABELS = ["positive", "negative", "neutral"]


class AnnotateProcess:
    """`python -m textcoder annotate ARGS --port P` until the `with` block ends; the coders'
    tokens read from the URLs it prints."""

    def __init__(self, *args: str, startup_timeout: float = 60.0, port: int = 0) -> None:
        self.args = list(args)
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.tokens: dict[str, str] = {}
        self._log = Path(tempfile.mkstemp(prefix="textcoder-annotate-", suffix=".log")[1])

    def start(self) -> AnnotateProcess:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        with self._log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "textcoder",
                    "annotate",
                    *self.args,
                    "--port",
                    str(self.port),
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"textcoder annotate exited early:\n{self.output()}")
            try:
                if httpx.get(f"{self.base}/health", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)  # polling interval, not a wait for readiness
        else:
            self.stop()
            raise RuntimeError(f"textcoder annotate not healthy in time:\n{self.output()}")
        for who, token in re.findall(
            r"^  (\S+?)(?: \(\d+ texts\))?: \S+\?token=(\S+)$", self.output(), re.M
        ):
            self.tokens["" if who == "admin" else who] = token
        return self

    def output(self) -> str:
        return self._log.read_text(errors="replace")

    def url(self, who: str) -> str:
        path = "/admin" if who == "" else f"/coder/{who}"
        return f"{self.base}{path}?token={self.tokens[who]}"

    def client(self, who: str) -> CoderClient:
        """A client holding `who`'s token as the browser would (the cookie), not following
        redirects, that sends the form token of `who`'s page with its forms."""
        return CoderClient(who, base_url=self.base, cookies={"textcoder_token": self.tokens[who]})

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> AnnotateProcess:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self._log.unlink(missing_ok=True)


class CoderClient(httpx.Client):
    """An HTTP client that posts forms as the coder's page does: with the page's form token
    (read once from the coder's first page) unless the form names its own."""

    def __init__(self, who: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.who = who
        self._csrf: str | None = None

    def csrf(self) -> str:
        if self._csrf is None:
            page = self.get(f"/coder/{self.who}/1").text
            found = re.search(r'name="csrf" value="([^"]*)"', page)
            self._csrf = found.group(1) if found else ""
        return self._csrf

    def post(
        self, url: str, *, data: dict[str, object] | None = None, **kw: object
    ) -> httpx.Response:  # type: ignore[override]
        if data is not None and "csrf" not in data:
            data = {**data, "csrf": self.csrf()}
        return super().post(url, data=data, **kw)  # type: ignore[arg-type]


def coded_sample(path: Path, n: int = 8) -> Path:
    """A coded table as a sample: texts with ids, and model columns full of markers that no
    coder's page may show."""
    df = pd.DataFrame(
        {"id": [f"t{i}" for i in range(n)], "text": [f"text number {i}" for i in range(n)]}
    )
    df["sentiment"] = [LABELS[i % 3] for i in range(n)]
    for lab in LABELS:
        df[f"sentiment_p_{lab}"] = 0.123457
    df["sentiment_outside"] = 0.62963
    df["sentiment_raw"] = [f"MODEL-ANSWER-{i}" for i in range(n)]
    df.to_csv(path, index=False)
    return path


def post(client: httpx.Client, who: str, pos: int, item: str, **fields: str) -> httpx.Response:
    data = {"item": item, **{k.replace("v_", "v:"): v for k, v in fields.items()}}
    return client.post(f"/coder/{who}/{pos}", data=data)


def item_at(client: httpx.Client, who: str, pos: int) -> str:
    page = client.get(f"/coder/{who}/{pos}")
    assert page.status_code == 200, page.text
    found = re.search(r'name="item" value="([^"]*)"', page.text)
    assert found is not None
    return found.group(1)


@pytest.fixture
def served(tmp_path: Path):  # type: ignore[no-untyped-def]
    sample = coded_sample(tmp_path / "sample.csv")
    args = (str(sample), "-c", str(BOOK), "--coders", "alice,bob", "--id-column", "id")
    with AnnotateProcess(
        *args, "--store", str(tmp_path / "codes.sqlite"), "--resamples", "20"
    ) as s:
        yield s


def test_a_coder_sees_only_the_text_and_own_codes(served: AnnotateProcess) -> None:
    bob = served.client("bob")
    item = item_at(bob, "bob", 1)
    r = post(bob, "bob", 1, item, v_sentiment="negative", note="BOB-NOTE-SECRET", action="next")
    assert r.status_code == 303
    alice = served.client("alice")
    pages = [alice.get("/coder/alice", follow_redirects=True)]
    pages += [alice.get(f"/coder/alice/{p}") for p in range(1, 9)]
    pages += [alice.get("/static/annotate.js"), alice.get("/static/annotate.css")]
    for page in pages:
        assert page.status_code == 200
        for secret in ("MODEL-ANSWER", "0.123457", "0.62963", "BOB-NOTE-SECRET"):
            assert secret not in page.text
        assert " checked" not in page.text  # bob's choice is not pre-selected for alice
    assert "text number" in pages[0].text
    # alice's token opens nothing else
    for path in (
        "/admin",
        "/admin/export.csv",
        "/admin/summary.json",
        "/coder/bob",
        "/coder/bob/1",
    ):
        assert alice.get(path).status_code == 403, path
        assert httpx.get(f"{served.base}{path}").status_code == 403, path  # no token
        assert httpx.get(f"{served.base}{path}?token=guess").status_code == 403, path
    assert post(alice, "bob", 1, item, v_sentiment="positive", action="next").status_code == 403
    assert httpx.get(served.url("bob")).status_code == 303  # bob's own URL works
    assert httpx.get(f"{served.base}/coder/alice?token={served.tokens['bob']}").status_code == 403


def test_posts_are_checked_against_the_codebook(served: AnnotateProcess) -> None:
    alice = served.client("alice")
    item = item_at(alice, "alice", 1)
    for fields in (
        {"v_sentiment": "angry"},
        {"v_mood": "positive"},
        {"v_sentiment": "positive", "action": "dance"},
    ):
        r = post(alice, "alice", 1, item, **fields)
        assert r.status_code == 400 and r.text.startswith("400: "), r.text
    r = alice.post("/coder/alice/1", data={"item": item, "v:sentiment": ["positive", "negative"]})
    assert r.status_code == 400
    assert post(alice, "alice", 1, "t-other", v_sentiment="positive").status_code == 409
    assert post(alice, "alice", 99, item, v_sentiment="positive").status_code == 404
    assert " checked" not in alice.get("/coder/alice/1").text  # nothing of them was saved
    # an alias is a category too, stored as the label
    assert post(alice, "alice", 1, item, v_sentiment="NEG", action="save").status_code == 204
    assert 'value="negative" checked' in alice.get("/coder/alice/1").text


def test_a_script_in_a_text_is_shown_as_text(tmp_path: Path) -> None:
    sample = tmp_path / "s.csv"
    evil = "<script>alert('x')</script> & <b>bold</b>"
    pd.DataFrame({"text": [evil, "plain"]}).to_csv(sample, index=False)
    with AnnotateProcess(str(sample), "-c", str(BOOK), "--coders", "ann") as s:
        ann = s.client("ann")
        pages = [ann.get(f"/coder/ann/{p}").text for p in (1, 2)]
    page = next(p for p in pages if "bold" in p)
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    assert "<script>alert" not in page and "<b>bold" not in page
    assert page.count("<script") == 1  # the app's own script, served by textcoder


def test_a_restart_between_two_choices_loses_nothing(tmp_path: Path) -> None:
    sample = coded_sample(tmp_path / "sample.csv", n=5)
    store = tmp_path / "codes.sqlite"
    args = (
        str(sample),
        "-c",
        str(BOOK),
        "--coders",
        "alice",
        "--store",
        str(store),
        "--id-column",
        "id",
    )
    with AnnotateProcess(*args) as first:
        c = first.client("alice")
        one = item_at(c, "alice", 1)
        assert (
            post(c, "alice", 1, one, v_sentiment="neutral", note="first", action="next").status_code
            == 303
        )
        tokens = dict(first.tokens)
        first.stop(kill=True)  # SIGKILL right after the answer: the choice is already committed
    with AnnotateProcess(*args) as second:
        assert second.tokens == tokens  # the same URLs after a restart
        c = second.client("alice")
        r = c.get("/coder/alice")
        assert r.status_code == 303 and r.headers["location"] == "/coder/alice/2"  # resumes
        assert 'value="neutral" checked' in c.get("/coder/alice/1").text
        two = item_at(c, "alice", 2)
        assert post(c, "alice", 2, two, v_sentiment="positive", action="next").status_code == 303
    out = tmp_path / "codes.csv"
    proc = textcoder(
        "annotate",
        str(sample),
        "-c",
        str(BOOK),
        "--store",
        str(store),
        "--id-column",
        "id",
        "--export",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    codes = pd.read_csv(out, dtype=str, keep_default_na=False).set_index("id")
    assert codes.loc[one, "sentiment_by_alice"] == "neutral"
    assert codes.loc[two, "sentiment_by_alice"] == "positive"
    assert codes.loc[one, "note_by_alice"] == "first"
    assert (codes["sentiment_by_alice"] != "").sum() == 2


def test_concurrent_coders_lose_no_code(tmp_path: Path) -> None:
    sample = coded_sample(tmp_path / "sample.csv", n=12)
    store = tmp_path / "codes.sqlite"
    args = (
        str(sample),
        "-c",
        str(BOOK),
        "--coders",
        "a,b,c",
        "--store",
        str(store),
        "--id-column",
        "id",
    )
    errors: list[str] = []
    with AnnotateProcess(*args) as s:

        def code_all(who: str) -> None:
            c = s.client(who)
            for pos in range(1, 13):
                item = item_at(c, who, pos)
                r = post(c, who, pos, item, v_sentiment=LABELS[pos % 3], action="next")
                if r.status_code != 303:
                    errors.append(f"{who} {pos}: {r.status_code}")

        threads = [threading.Thread(target=code_all, args=(w,)) for w in "abc"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    book = Codebook.from_yaml(BOOK)
    project = open_annotation(sample, book, None, store_path=store, id_column="id")
    frame = export_frame(book, project.sample, project.store)
    for who in "abc":
        assert (frame[f"sentiment_by_{who}"] != "").all()


def test_overlap_shares_some_texts_and_splits_the_rest() -> None:
    ids = [str(i) for i in range(20)]
    got = assign(ids, ["a", "b", "c"], 0.3, seed=0)
    shared = set(got["a"]) & set(got["b"]) & set(got["c"])
    assert len(shared) == 6
    assert set().union(*map(set, got.values())) == set(ids)
    rest = [set(v) - shared for v in got.values()]
    assert sum(map(len, rest)) == 14 and not (rest[0] & rest[1] or rest[1] & rest[2])
    assert got == assign(ids, ["a", "b", "c"], 0.3, seed=0)  # the same after a restart
    full = assign(ids, ["a", "b"], 1.0, seed=0)
    assert sorted(full["a"]) == sorted(full["b"]) == sorted(ids)
    assert full["a"] != full["b"]  # each coder has an own order


def test_export_majority_ties_and_agreement(tmp_path: Path) -> None:
    sample = coded_sample(tmp_path / "sample.csv", n=6)
    book = Codebook.from_yaml(BOOK)
    project = open_annotation(
        sample, book, ["a", "b", "c"], store_path=tmp_path / "s.sqlite", id_column="id"
    )
    store: HumanStore = project.store
    plan = {  # text -> codes of a, b, c ("" = not coded)
        "t0": ["positive", "positive", "negative"],
        "t1": ["negative", "neutral", ""],
        "t2": ["neutral", "neutral", "neutral"],
        "t3": ["positive", "", ""],
        "t4": ["negative", "positive", "negative"],
    }
    for item, codes in plan.items():
        for coder, code in zip("abc", codes, strict=True):
            if code:
                store.save(coder, item, Save({"sentiment": code}, status=DONE))
    store.save("b", "t4", Save({}, note="sarcasm?", unsure=True))
    frame = export_frame(book, project.sample, store).set_index("id")
    assert list(frame["sentiment_human"]) == ["positive", "", "neutral", "positive", "negative", ""]
    assert list(frame["sentiment_tie"]) == [False, True, False, False, False, False]
    assert frame.loc["t4", "note_by_b"] == "sarcasm?" and bool(frame.loc["t4", "unsure_by_b"])
    assert frame.loc["t0", "sentiment_raw"] == "MODEL-ANSWER-0"  # the sample's columns stay
    # alpha and kappa against the libraries on the exported columns
    codes = {c: frame[f"sentiment_by_{c}"].to_dict() for c in "abc"}
    codes = {c: {k: v for k, v in m.items() if v} for c, m in codes.items()}
    (rel,) = reliability(
        book.variables[0], codes, list("abc"), list(frame.index), resamples=50, seed=0
    )
    data = [[LABELS.index(v) if v else np.nan for v in frame[f"sentiment_by_{c}"]] for c in "abc"]
    twice = np.asarray(data)[:, [0, 1, 2, 4]]
    expect = krippendorff.alpha(
        reliability_data=twice, level_of_measurement="nominal", value_domain=[0, 1, 2]
    )
    assert rel.alpha.value == pytest.approx(expect, abs=1e-12) and rel.n_texts == 4
    assert rel.alpha.ci_low is not None and rel.alpha.ci_low <= rel.alpha.value <= rel.alpha.ci_high
    ab = next(k for k in rel.kappas if (k.a, k.b) == ("a", "b"))
    both = [i for i in frame.index if codes["a"].get(i) and codes["b"].get(i)]
    expect_k = cohen_kappa_score([codes["a"][i] for i in both], [codes["b"][i] for i in both])
    assert ab.n == 4 and ab.kappa == pytest.approx(expect_k, abs=1e-12)


def test_admin_page_shows_progress_and_model_agreement(served: AnnotateProcess) -> None:
    chosen: dict[str, str] = {}
    for who in ("alice", "bob"):
        c = served.client(who)
        for pos in range(1, 7):
            item = item_at(c, who, pos)
            code = LABELS[int(item[1:]) % 3] if who == "alice" else LABELS[(int(item[1:]) * 2) % 3]
            chosen[f"{who}:{item}"] = code
            assert post(c, who, pos, item, v_sentiment=code, action="next").status_code == 303
    admin = served.client("")
    page = admin.get("/admin")
    assert page.status_code == 200
    assert 'http-equiv="refresh"' in page.text
    summary = admin.get("/admin/summary.json").json()
    assert [(p["coder"], p["done"], p["assigned"]) for p in summary["progress"]] == [
        ("alice", 6, 8),
        ("bob", 6, 8),
    ]
    model = {m["against"]: m for m in summary["model"]}
    assert set(model) == {"alice", "bob", "majority"}
    items = [k.split(":")[1] for k in chosen if k.startswith("alice:")]
    model_codes = [LABELS[int(i[1:]) % 3] for i in items]  # the sample's model column
    expect = accuracy_score(model_codes, [chosen[f"alice:{i}"] for i in items])
    assert model["alice"]["n"] == 6 and model["alice"]["metrics"]["accuracy"][
        "value"
    ] == pytest.approx(expect)
    csv = admin.get("/admin/export.csv")
    assert csv.status_code == 200 and "sentiment_by_alice" in csv.text


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    sample = coded_sample(tmp_path / "sample.csv", n=4)
    proc = textcoder("annotate", str(sample), "-c", str(BOOK))
    assert proc.returncode == 1 and "--coders" in proc.stderr and proc.stderr.count("\n") == 1
    proc = textcoder("annotate", str(sample), "-c", str(BOOK), "--coders", "a b")
    assert proc.returncode == 1 and "coder name 'a b'" in proc.stderr
    proc = textcoder(
        "annotate", str(sample), "-c", str(BOOK), "--coders", "a", "--text-column", "body"
    )
    assert proc.returncode == 1 and "no text column 'body'" in proc.stderr
    proc = textcoder("annotate", str(sample), "-c", str(BOOK), "--export", str(tmp_path / "x.csv"))
    assert proc.returncode == 1 and "no annotation store to export" in proc.stderr
    assert not (tmp_path / "sample.csv.annotate.sqlite").exists()
    store = tmp_path / "s.sqlite"
    book = Codebook.from_yaml(BOOK)
    open_annotation(sample, book, ["a", "b"], store_path=store, overlap=0.5).store.close()
    proc = textcoder(
        "annotate",
        str(sample),
        "-c",
        str(BOOK),
        "--coders",
        "a,b,c",
        "--overlap",
        "0.5",
        "--store",
        str(store),
    )
    assert proc.returncode == 1 and "keep the same coders" in proc.stderr


HEADLINES = EXAMPLES / "headlines.yaml"


def test_several_variables_multi_label_and_ordinal(tmp_path: Path) -> None:
    sample = tmp_path / "h.csv"
    pd.read_csv(EXAMPLES / "headlines.csv").head(4).to_csv(sample, index=False)
    store = tmp_path / "h.sqlite"
    args = (
        str(sample),
        "-c",
        str(HEADLINES),
        "--coders",
        "a,b",
        "--store",
        str(store),
        "--id-column",
        "id",
    )
    with AnnotateProcess(*args, "--resamples", "10") as s:
        a = s.client("a")
        page = a.get("/coder/a/1").text
        assert page.count('type="checkbox" name="v:frames"') == 4 and 'data-single="0"' in page
        item = item_at(a, "a", 1)
        # next with a variable left open stays on the text and saves what was chosen
        r = post(a, "a", 1, item, v_topic="economy", action="next")
        assert r.status_code == 303 and r.headers["location"] == "/coder/a/1?missing=1"
        assert "Choose a code for every variable" in a.get(r.headers["location"]).text
        r = a.post(
            "/coder/a/1",
            data={"item": item, "v:tone": "very negative", "v:frames": ["", "responsibility", "conflict"], "note": "", "action": "next"},
        )  # fmt: skip
        assert r.status_code == 303 and r.headers["location"] == "/coder/a/2"
        bad = a.post(
            "/coder/a/2", data={"item": item_at(a, "a", 2), "v:frames": ["conflict", "war"]}
        )
        assert bad.status_code == 400 and "'war'" in bad.text
        two = item_at(a, "a", 2)
        r = a.post(
            "/coder/a/2",
            data={
                "item": two,
                "v:topic": "sports",
                "v:tone": "neutral",
                "v:frames": "",
                "action": "next",
            },
        )
        assert r.status_code == 303
        b = s.client("b")
        for pos in range(1, 5):
            it = item_at(b, "b", pos)
            if it not in (item, two):
                continue
            frames = ["conflict"] if it == item else ["human interest"]
            r = b.post(
                f"/coder/b/{pos}",
                data={
                    "item": it,
                    "v:topic": "economy",
                    "v:tone": "negative",
                    "v:frames": frames,
                    "action": "next",
                },
            )
            assert r.status_code == 303
        summary = s.client("").get("/admin/summary.json").json()
    names = [r["name"] for r in summary["reliability"]]
    assert names[:2] == ["topic", "tone"] and "frames: conflict" in names
    assert next(r for r in summary["reliability"] if r["name"] == "tone")["level"] == "ordinal"
    out = tmp_path / "codes.csv"
    proc = textcoder(
        "annotate", *args[:3], "--store", str(store), "--id-column", "id", "--export", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    codes = pd.read_csv(out, dtype=str, keep_default_na=False).set_index("id")
    assert codes.loc[item, "frames_by_a"] == "conflict;responsibility"  # codebook order
    assert codes.loc[two, "frames_by_a"] == "" and codes.loc[two, "topic_by_a"] == "sports"
    assert codes.loc[item, "tone_by_a"] == "very negative"
    assert codes.loc[item, "frames_human"] == "" and codes.loc[item, "frames_tie"] == "True"
    assert codes.loc[item, "topic_human"] == "economy" and codes.loc[item, "topic_tie"] == "False"


FORM = "application/x-www-form-urlencoded"


def test_forged_posts_from_another_origin_are_refused(served: AnnotateProcess) -> None:
    alice = served.client("alice")
    item = item_at(alice, "alice", 1)
    good = {"item": item, "v:sentiment": "negative", "note": "FORGED", "action": "save"}
    forged = (
        {"sec-fetch-site": "same-site"},  # another port of 127.0.0.1
        {"sec-fetch-site": "cross-site"},
        {"origin": "http://127.0.0.1:9999"},
        {"origin": "null"},
    )
    for headers in forged:
        r = alice.post("/coder/alice/1", data=good, headers=headers)
        assert r.status_code == 403, headers
        assert r.headers["x-content-type-options"] == "nosniff"
    # the form token: missing, wrong, or another coder's
    bob_csrf = served.client("bob").csrf()
    for token in ("", "0" * 64, bob_csrf):
        assert alice.post("/coder/alice/1", data={**good, "csrf": token}).status_code == 403
    # only the content type the page sends
    body = "item=" + item + "&v:sentiment=negative&action=save&csrf=" + alice.csrf()
    for kind in ("text/plain", "multipart/form-data; boundary=x", "application/json", None):
        headers = {"content-type": kind} if kind else {}
        r = alice.post("/coder/alice/1", content=body.encode(), headers=headers)
        assert r.status_code == 415, kind
    page = alice.get("/coder/alice/1").text
    assert " checked" not in page and "FORGED" not in page  # nothing of them was saved
    same = {"sec-fetch-site": "same-origin", "origin": served.base}
    r = alice.post("/coder/alice/1", data=good, headers=same)
    assert r.status_code == 204
    assert 'value="negative" checked' in alice.get("/coder/alice/1").text


def test_an_empty_or_wrong_token_in_the_url_keeps_the_cookie(served: AnnotateProcess) -> None:
    alice = served.client("alice")
    for query, status in (("?token=", 303), (f"?token={served.tokens['bob']}", 403)):
        for path in ("/coder/alice", "/coder/alice/3"):
            r = alice.get(path + query)
            assert r.status_code == status, (path, query)
            assert "set-cookie" not in r.headers, (path, query)
    assert alice.get("/coder/alice/3").status_code == 200  # still signed in
    r = httpx.get(served.url("alice"))
    assert r.status_code == 303 and "textcoder_token=" in r.headers["set-cookie"]
    assert "HttpOnly" in r.headers["set-cookie"] and "token=" not in r.headers["location"]


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_store_and_its_companions_are_owner_only_after_a_kill(tmp_path: Path) -> None:
    sample = coded_sample(tmp_path / "sample.csv", n=4)
    book = Codebook.from_yaml(BOOK)
    loose = tmp_path / "loose.sqlite"  # an existing store left readable by everyone
    open_annotation(sample, book, ["a"], store_path=loose, id_column="id").store.close()
    for name in (loose, tmp_path / "loose.sqlite-wal"):
        name.touch()
        name.chmod(0o644)
    old = os.umask(0o022)
    try:
        for store in (tmp_path / "new.sqlite", loose):
            args = (str(sample), "-c", str(BOOK), "--coders", "a", "--id-column", "id")
            with AnnotateProcess(*args, "--store", str(store)) as s:
                c = s.client("a")
                for pos in range(1, 5):
                    r = post(c, "a", pos, item_at(c, "a", pos), v_sentiment="neutral")
                    assert r.status_code == 204
                s.stop(kill=True)  # SIGKILL: the WAL is never checkpointed away
            wal, shm = (store.with_name(store.name + x) for x in ("-wal", "-shm"))
            assert wal.stat().st_size > 0 and shm.exists()
            assert s.tokens["a"].encode() in wal.read_bytes() + store.read_bytes()
            assert [mode(p) for p in (store, wal, shm)] == [0o600] * 3, store
    finally:
        os.umask(old)


def rss_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def test_oversize_bodies_are_refused_without_being_held(served: AnnotateProcess) -> None:
    assert served.proc is not None
    pid = served.proc.pid
    alice = served.client("alice")
    item = item_at(alice, "alice", 1)
    assert post(alice, "alice", 1, item, v_sentiment="neutral").status_code == 204  # warm
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # the peak RSS starts again from here
    before = rss_kb(pid, "VmRSS")
    sent = 0

    def chunks():  # type: ignore[no-untyped-def]
        nonlocal sent
        block = b"note=" + b"x" * (1 << 20)
        for _ in range(200):  # up to 200 MB, chunked (no Content-Length)
            sent += len(block)
            yield block

    r = alice.post("/coder/alice/1", content=chunks(), headers={"content-type": FORM})
    assert r.status_code == 413 and r.headers["x-content-type-options"] == "nosniff"
    peak = rss_kb(pid, "VmHWM")
    print(f"server RSS {before} kB before, peak {peak} kB; {sent >> 20} MB offered")
    assert peak - before < 8 * 1024, (before, peak, sent)
    head = (  # a Content-Length past the limit is refused before any of the body is read
        f"POST /coder/alice/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {FORM}\r\n"
        f"Cookie: textcoder_token={served.tokens['alice']}\r\nContent-Length: 9999999\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", served.port), timeout=30) as conn:
        conn.sendall(head.encode())
        assert conn.recv(64).startswith(b"HTTP/1.1 413 ")
    # more fields than a form holds: a clear 400 with the usual headers, not a 500
    many = "&".join(f"f{i}=1" for i in range(1001)) + f"&item={item}&csrf={alice.csrf()}"
    r = alice.post("/coder/alice/1", content=many.encode(), headers={"content-type": FORM})
    assert r.status_code == 400 and "1000 fields" in r.text
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    assert post(alice, "alice", 1, item, v_sentiment="neutral", unsure="0").status_code == 204
    assert 'name="unsure" value="1">' in alice.get("/coder/alice/1").text  # 0 is not unsure


def test_formulas_in_notes_are_defused_in_spreadsheet_exports(served: AnnotateProcess) -> None:
    alice = served.client("alice")
    notes = ['=HYPERLINK("http://x.test","click")', "+1", "-2", "@SUM(A1)", "plain = text"]
    items = []
    for pos, note in enumerate(notes, start=1):
        items.append(item_at(alice, "alice", pos))
        assert (
            post(alice, "alice", pos, items[-1], v_sentiment="negative", note=note).status_code
            == 204
        )
    csv = served.client("").get("/admin/export.csv").text
    got = pd.read_csv(io.StringIO(csv), dtype=str, keep_default_na=False).set_index("id")
    expect = ["'" + n for n in notes[:4]] + [notes[4]]
    assert [got.loc[i, "note_by_alice"] for i in items] == expect
    assert got.loc[items[0], "sentiment_by_alice"] == "negative"  # codes and ids as they are
    sample, store = Path(served.args[0]), served.args[served.args.index("--store") + 1]
    for name, defused in (("codes.csv", True), ("codes.jsonl", False)):
        out = sample.with_name(name)
        proc = textcoder(
            "annotate",
            *served.args[:3],
            "--id-column",
            "id",
            "--store",
            store,
            "--export",
            str(out),
        )
        assert proc.returncode == 0, proc.stderr
        frame = (
            pd.read_csv(out, dtype=str) if defused else pd.read_json(out, lines=True, dtype=False)
        )
        first = frame.set_index("id").loc[items[0], "note_by_alice"]
        assert first == ("'" if defused else "") + notes[0], name


def test_an_edited_sample_is_refused_by_id_and_a_reordered_one_accepted(tmp_path: Path) -> None:
    sample = coded_sample(tmp_path / "sample.csv", n=6)
    store = tmp_path / "codes.sqlite"
    args = (str(sample), "-c", str(BOOK), "--id-column", "id", "--store", str(store))
    with AnnotateProcess(*args, "--coders", "a,b", "--overlap", "0.5") as s:
        a = s.client("a")
        first = item_at(a, "a", 1)
        assert post(a, "a", 1, first, v_sentiment="positive", action="next").status_code == 303
        mine = [item_at(a, "a", p) for p in range(1, 5)]
    df = pd.read_csv(sample, dtype=str)
    df.iloc[::-1].to_csv(sample, index=False)  # the same rows, reordered
    with AnnotateProcess(*args, "--coders", "a,b", "--overlap", "0.5") as s:
        a = s.client("a")
        assert [item_at(a, "a", p) for p in range(1, 5)] == mine  # the same texts, same order
        assert 'value="positive" checked' in a.get("/coder/a/1").text
    edited = df.copy()
    edited.loc[edited["id"].isin(["t2", "t4"]), "text"] = "EDITED: I hate everything about this."
    edited.to_csv(sample, index=False)
    out = tmp_path / "codes.csv"
    for extra in (("--coders", "a,b", "--overlap", "0.5"), ("--export", str(out))):
        proc = textcoder("annotate", *args, *extra)
        assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
        assert "the text of ids 't2', 't4'" in proc.stderr and "changed" in proc.stderr
        assert "token=" not in proc.stdout
    assert not out.exists()
    df.drop(index=[0]).to_csv(sample, index=False)  # a row gone
    proc = textcoder("annotate", *args, "--export", str(out))
    assert proc.returncode == 1 and "made for another sample" in proc.stderr
    assert "id 't0' not in it" in proc.stderr


def test_settings_are_checked_before_anything_is_written(tmp_path: Path) -> None:
    sample = coded_sample(tmp_path / "sample.csv", n=4)
    store = tmp_path / "codes.sqlite"
    base = ("annotate", str(sample), "-c", str(BOOK), "--coders", "a,b", "--store", str(store))
    for bad, says in (
        (("--overlap", "1.5"), "--overlap must be between 0 and 1"),
        (("--overlap", "nan"), "--overlap must be between 0 and 1, not nan"),
        (("--seed", "-1"), "--seed must be 0 or more"),
        (("--resamples", "0"), "--resamples must be 1 or more"),
        (("--resamples", "-5"), "--resamples must be 1 or more"),
        (("--port", "70000"), "between 1 and 65535"),
    ):
        proc = textcoder(*base, *bad)
        assert proc.returncode in (1, 2) and says in proc.stderr, (bad, proc.stderr)
        assert "Traceback" not in proc.stderr and "token=" not in proc.stdout
        assert not store.exists(), bad
    with socket.socket() as busy:  # a port in use: refused before any link is printed
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        proc = textcoder(*base, "--port", str(busy.getsockname()[1]))
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert "cannot listen on 127.0.0.1:" in proc.stderr and "in use" in proc.stderr
    assert "token=" not in proc.stdout and not store.exists()
    import sqlite3

    other = tmp_path / "coded.sqlite"  # another program's SQLite file
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE answers (key TEXT PRIMARY KEY, value TEXT)")
    other.chmod(0o644)
    proc = textcoder(*base[:-1], str(other), "--port", str(free_port()))
    assert proc.returncode == 1 and "not an annotation store" in proc.stderr
    assert "answers" in proc.stderr and "token=" not in proc.stdout
    with sqlite3.connect(other) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"answers"} and mode(other) == 0o644  # left as it was


def test_admin_page_counts_shared_texts_and_shows_notes_and_ties(served: AnnotateProcess) -> None:
    alice, bob = served.client("alice"), served.client("bob")
    where = {item_at(bob, "bob", p): p for p in range(1, 9)}
    items = []
    for pos, code in zip((1, 2, 3), ("positive", "negative", "neutral"), strict=True):
        items.append(item_at(alice, "alice", pos))
        assert (
            post(alice, "alice", pos, items[-1], v_sentiment=code, action="next").status_code == 303
        )
    one, two = items[0], items[1]  # bob differs on one, agrees on two, leaves the third
    r = post(bob, "bob", where[one], one, v_sentiment="negative", note="SARCASM?", unsure="1")
    assert r.status_code == 204
    assert post(bob, "bob", where[two], two, v_sentiment="negative").status_code == 204
    admin = served.client("")
    summary = admin.get("/admin/summary.json").json()
    majority = next(m for m in summary["model"] if m["against"] == "majority")
    assert majority["n"] == 1  # the one text two coders agree on; not the tie, not the third
    assert summary["ties"] == {"sentiment": 1}
    page = admin.get("/admin").text
    assert "<b>1</b> text tied" in page
    row = page[page.index('id="disagreements"') :]
    assert "SARCASM?" in row and "unsure: bob" in row
    kappa = re.search(r'<td class="num kappa([^"]*)"[^>]*>[^<]*<small>\(n=(\d+)\)', page)
    assert kappa is not None and kappa.groups() == (" few", "2")  # n shown, greyed out
    # the admin resolves the tie: the export's majority code is theirs, the tie still marked
    csrf = re.search(r'name="csrf" value="([^"]*)"', page)
    assert csrf is not None
    form = {"item": one, "variable": "sentiment", "code": "neutral", "csrf": csrf.group(1)}
    assert admin.post("/admin/resolve", data={**form, "csrf": ""}).status_code == 403
    assert admin.post("/admin/resolve", data={**form, "code": "angry"}).status_code == 400
    assert alice.post("/admin/resolve", data=form).status_code == 403  # a coder cannot
    r = admin.post("/admin/resolve", data=form)
    assert r.status_code == 303 and r.headers["location"] == "/admin#disagreements"
    summary = admin.get("/admin/summary.json").json()
    assert summary["resolved"] == {"sentiment": 1}
    assert next(m for m in summary["model"] if m["against"] == "majority")["n"] == 2
    csv = admin.get("/admin/export.csv").text
    got = pd.read_csv(io.StringIO(csv), dtype=str, keep_default_na=False).set_index("id")
    assert (got.loc[one, "sentiment_human"], got.loc[one, "sentiment_tie"]) == ("neutral", "True")
    assert "<option selected>neutral</option>" in admin.get("/admin").text
    store = served.args[served.args.index("--store") + 1]
    out = Path(store).with_name("codes.csv")
    proc = textcoder(
        "annotate", *served.args[:3], "--id-column", "id", "--store", store, "--export", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    assert "sentiment: 1 text(s) tied, 0 of them unresolved" in proc.stdout
