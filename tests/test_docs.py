"""The docs site builds with `mkdocs build --strict`: no broken link, no missing page, and the
command reference written from the parser (skipped where mkdocs is not installed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import ROOT

pytest.importorskip("mkdocs")
pytest.importorskip("material")
pytest.importorskip("mkdocstrings")


def test_the_site_builds_strict_with_every_command(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_MKDOCS_2_WARNING": "1"}
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    cli = (site / "reference" / "cli" / "index.html").read_text()
    from textcoder.cli import COMMANDS

    for name in COMMANDS:
        assert f"textcoder {name}" in cli, name
    assert "--calibrate" in cli and "--gold-file" in cli  # options, not only command names
    api = (site / "reference" / "api" / "index.html").read_text()
    assert "code_texts" in api and "raw_probs" in api  # from the docstrings


def test_the_readme_is_short_and_links_only_pages_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 250
    import re

    for link in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / link).is_file(), link
