"""Every command block of docs/tutorial.md, run in order in a temporary folder with the
embedded model, so the tutorial cannot go stale. The annotation server's block runs in the
background while two coders are simulated by posting codes through its HTTP pages, as a
browser would; then it is stopped with Ctrl-C, as the tutorial says."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd

from .conftest import ROOT, wait_for
from .servers import free_port
from .test_annotate import CoderClient, item_at

TUTORIAL = ROOT / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def command_blocks() -> list[str]:
    """The tutorial's ```bash blocks, in order (output is shown in ```text blocks)."""
    return [b.strip() for b in BLOCK.findall(TUTORIAL.read_text())]


def workspace(folder: Path) -> dict[str, str]:
    """`examples/` copied in, and `textcoder` and `python` on PATH as an install gives them."""
    shutil.copytree(ROOT / "examples", folder / "examples")
    bin_dir = folder / "bin"
    bin_dir.mkdir()
    for name, argv in (("textcoder", '-m textcoder "$@"'), ("python", '"$@"')):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" {argv}\n')
        shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    path = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    pythonpath = f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    return {**os.environ, "PATH": path, "PYTHONPATH": pythonpath}


def wait_healthy(proc: subprocess.Popen[str], base: str, log: Path) -> None:
    """Until the annotation server answers /health (its log shown if it exits first)."""

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/health", timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(healthy, "the annotation server to come up", proc, log, deadline_s=120)


def code_as_humans(base: str, printed: str, sample: Path) -> None:
    """alice gives every text the raters' `gold`; bob agrees except on every fifth text."""
    gold = pd.read_csv(sample, dtype={"id": str}).set_index("id")["gold"].to_dict()
    labels = ["negative", "neutral", "positive"]
    tokens = dict(re.findall(r"^  (\w+) \(\d+ texts\): \S+\?token=(\S+)$", printed, re.M))
    assert set(tokens) == {"alice", "bob"}, printed
    for who, token in tokens.items():
        with CoderClient(who, base_url=base, cookies={"textcoder_token": token}) as c:
            for pos in range(1, len(gold) + 1):
                item = item_at(c, who, pos)
                code = gold[item]
                if who == "bob" and pos % 5 == 0:
                    code = labels[(labels.index(code) + 1) % 3]
                data = {"item": item, "v:sentiment": code, "action": "next"}  # + the form token
                assert c.post(f"/coder/{who}/{pos}", data=data).status_code == 303


def serve_and_code(block: str, folder: Path, env: dict[str, str]) -> None:
    """Run the annotation server's block in the background, code as two humans, Ctrl-C."""
    port = free_port()
    log = folder / "annotate.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "-c", f"exec {block} --port {port}"],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(proc, base, log)
        code_as_humans(base, log.read_text(), folder / shlex.split(block)[2])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)


def test_every_block_of_the_tutorial_runs(tmp_path: Path) -> None:
    env = workspace(tmp_path)
    blocks = command_blocks()
    assert len(blocks) >= 8
    for i, block in enumerate(blocks):
        if "--coders" in block:
            serve_and_code(block, tmp_path, env)
            continue
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        (tmp_path / f"block{i}.log").write_text(f"$ {block}\n{done.stdout}\n{done.stderr}")
        assert done.returncode == 0, f"block {i}:\n{block}\n{done.stdout}\n{done.stderr}"
    report = (tmp_path / "evaluation.html").read_text()
    assert 'id="prevalence"' in report and "Not computed" not in report
    codes = pd.read_csv(tmp_path / "human_codes.csv")
    assert {"sentiment_by_alice", "sentiment_by_bob", "sentiment_human"} <= set(codes.columns)
    assert (tmp_path / "robustness.json").is_file()
