"""Seconds per text of exact scoring through the CLI, by engine build and settings.

    python bench/engine_settings.py                              # this interpreter's build
    python bench/engine_settings.py --python /venv-native-off/bin/python --extra

Each configuration (an interpreter, whose llama-cpp-python build it uses, and the value of
TEXTCODER_EXTRA_BUFTS) codes the same tweets with `textcoder code --scoring exact` on 80 and
on 10 texts; (t80 - t10) / 70 cancels the start-up (model load, self-check). Each figure is the
median of `--repeats` runs, for a short (~56 tokens) and a long (~2,000 tokens) codebook; the
ratio is to the first configuration, run in the same invocation. A configuration that crashes
is reported with its signal.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from coding_speed import TWEETS, books_near

from textcoder.backends.llama import LocalBackend

TARGETS = (56, 2004)
SIZES = (80, 10)


def write_inputs(folder: Path) -> list[tuple[Path, int]]:
    """The two codebooks as YAML and the two tables, in `folder`."""
    for n in SIZES:
        texts = [TWEETS[i % len(TWEETS)] + f" #{i}" for i in range(n)]
        pd.DataFrame({"id": range(n), "text": texts}).to_csv(folder / f"t{n}.csv", index=False)
    books = []
    for book, n_tok in books_near(LocalBackend(None), TARGETS):
        path = folder / f"book{n_tok}.yaml"
        path.write_text(yaml.safe_dump(book.model_dump(mode="json", exclude_none=True)))
        books.append((path, n_tok))
    return books


def one_run(python: str, extra: bool, book: Path, n: int, folder: Path) -> float | str:
    """Seconds for one CLI run, or the signal that ended it."""
    env = {**os.environ, "TEXTCODER_EXTRA_BUFTS": "1" if extra else "0"}
    out = folder / f"out-{os.getpid()}-{time.monotonic_ns()}.csv"
    cmd = [python, "-m", "textcoder", "code", str(folder / f"t{n}.csv"), "-c", str(book)]
    cmd += ["--scoring", "exact", "--fresh", "--quiet", "-o", str(out), "--store", f"{out}.db"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    if proc.returncode < 0:
        return signal.Signals(-proc.returncode).name
    if proc.returncode != 0:
        return f"exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}"
    return took


def per_text(python: str, extra: bool, book: Path, repeats: int, folder: Path) -> float | str:
    """Median over `repeats` of (t80 - t10) / 70, or why it could not be measured."""
    figures = []
    for _ in range(repeats):
        long, short = (one_run(python, extra, book, n, folder) for n in SIZES)
        if isinstance(long, str) or isinstance(short, str):
            return long if isinstance(long, str) else str(short)
        figures.append((long - short) / (SIZES[0] - SIZES[1]))
    return statistics.median(figures)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--python", action="append", help="an interpreter (repeatable)")
    ap.add_argument("--extra", action="store_true", help="also time TEXTCODER_EXTRA_BUFTS=1")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    pythons = args.python or [sys.executable]
    configs = [(p, e) for p in pythons for e in ((False, True) if args.extra else (False,))]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        books = write_inputs(folder)
        print(f"load {os.getloadavg()[0]:.2f} at start; median of {args.repeats} runs")
        print(
            "| build (interpreter) | extra bufts | "
            + " | ".join(f"s/text, {n} tok | ratio" for _, n in books)
            + " |"
        )
        base: dict[int, float] = {}
        for python, extra in configs:
            cells = []
            for book, n_tok in books:
                got = per_text(python, extra, book, args.repeats, folder)
                if isinstance(got, str):
                    cells += [got, "-"]
                    continue
                base.setdefault(n_tok, got)
                cells += [f"{got:.4f}", f"{got / base[n_tok]:.2f}x"]
            print(
                f"| {python} | {'on' if extra else 'off'} | " + " | ".join(cells) + " |", flush=True
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
