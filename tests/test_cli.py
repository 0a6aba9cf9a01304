"""The command line: the README's main command, its outputs, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import textcoder as package
from textcoder import __version__
from textcoder.cli import COMMANDS, build_parser

from .conftest import EXAMPLES, ROOT, textcoder


def test_code_writes_table_and_manifest(tmp_path: Path) -> None:
    data = tmp_path / "tweets.csv"
    pd.DataFrame(
        {"id": ["a", "b", "c"], "text": ["I love it", "", "Bus at nine."], "gold": ["positive"] * 3}
    ).to_csv(data, index=False)
    proc = textcoder(
        "code",
        str(data),
        "--codebook",
        str(EXAMPLES / "sentiment.yaml"),
        "--id-column",
        "id",
        "--scoring",
        "text",
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "tweets.coded.csv"
    coded = pd.read_csv(out, keep_default_na=False)
    assert list(coded["id"]) == ["a", "b", "c"] and list(coded["gold"]) == ["positive"] * 3
    assert coded.loc[1, "sentiment"] == "<invalid>"
    assert "row" in proc.stderr or "id 'b'" in proc.stderr
    manifest = json.loads((tmp_path / "tweets.coded.csv.manifest.json").read_text())
    for key in (
        "textcoder_version",
        "codebook",
        "backend",
        "model",
        "system_fingerprint",
        "parameters",
        "rows",
        "prompt_tokens",
        "completion_tokens",
        "started",
        "ended",
    ):
        assert key in manifest, key
    assert manifest["rows"] == 3 and manifest["backend"] == "local"
    assert len(manifest["codebook"]["sha256"]) == 64
    assert data.read_text().count("\n") == 4  # the input is untouched


def test_missing_text_column_is_one_line(tmp_path: Path) -> None:
    proc = textcoder(
        "code",
        str(EXAMPLES / "tweets.csv"),
        "--codebook",
        str(EXAMPLES / "sentiment.yaml"),
        "--text-column",
        "nosuchcolumn",
        "-o",
        str(tmp_path / "o.csv"),
    )
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "nosuchcolumn" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o.csv").exists()


def test_malformed_codebook_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("instructions: x\ncategories:\n  - a\n  - label: b\n    colour: red\n")
    proc = textcoder(
        "code", str(EXAMPLES / "tweets.csv"), "--codebook", str(bad), "-o", str(tmp_path / "o.csv")
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        f"textcoder: error: {bad}:5: categories[1].colour: is not a codebook field"
    )


def test_output_never_overwrites_input(tmp_path: Path) -> None:
    data = tmp_path / "t.csv"
    data.write_text("text\nhello\n")
    proc = textcoder(
        "code", str(data), "--codebook", str(EXAMPLES / "sentiment.yaml"), "-o", str(data)
    )
    assert proc.returncode == 1 and "overwrite" in proc.stderr
    assert data.read_text() == "text\nhello\n"


def test_other_formats_round_trip(tmp_path: Path) -> None:
    data = tmp_path / "t.jsonl"
    pd.DataFrame({"text": ["good", "bad"], "n": [1, 2]}).to_json(data, orient="records", lines=True)
    out = tmp_path / "coded.parquet"
    proc = textcoder(
        "code",
        str(data),
        "--codebook",
        str(EXAMPLES / "sentiment.yaml"),
        "-o",
        str(out),
        "--scoring",
        "text",
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    coded = pd.read_parquet(out)
    assert list(coded["n"]) == [1, 2] and "sentiment_outside" in coded.columns


def test_models_lists_the_embedded_model() -> None:
    proc = textcoder("models")
    assert proc.returncode == 0 and proc.stdout.startswith("smollm2 (default)")


HEAVY = ("sklearn", "llama_cpp", "matplotlib")
PROBE = """
import json, sys
from textcoder.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)), file=sys.stderr)
"""


def imported_by(*argv: str) -> set[str]:
    """The top-level packages in sys.modules after running one command in a fresh process."""
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, cwd=ROOT
    )
    return {name.split(".")[0] for name in json.loads(proc.stderr.strip().splitlines()[-1])}


def test_help_prompt_and_models_import_only_what_they_use() -> None:
    """`--help` loads no command module at all; `prompt` and `models` load neither
    scikit-learn, llama.cpp nor matplotlib (issue 12, item 7)."""
    help_mods = imported_by("--help")
    assert not help_mods & {*HEAVY, "pandas", "openai", "numpy", "pydantic"}, help_mods
    book = str(EXAMPLES / "sentiment.yaml")
    for argv in (("prompt", "-c", book, "-t", "hi"), ("models",), ("models", "pull", "--help")):
        mods = imported_by(*argv)
        assert not mods & set(HEAVY), (argv, mods & set(HEAVY))


def test_command_help_imports_none_of_the_heavy_libraries() -> None:
    """`textcoder code --help` (and the other commands' help) prints before pandas, scipy or
    llama.cpp are imported: the library loads when a command runs."""
    for command in ("code", "robustness", "evaluate", "infer", "sample"):
        mods = imported_by(command, "--help")
        assert not mods & {*HEAVY, "pandas", "scipy", "statsmodels"}, (command, mods)


def test_the_package_face_is_lazy_but_complete() -> None:
    code = (
        "import sys, textcoder; heavy = {'pandas', 'pydantic', 'numpy'} & set(sys.modules); "
        "from textcoder import Coder, Codebook, __version__; import textcoder.coder; "
        "assert Coder is textcoder.coder.Coder and 'Store' in dir(textcoder); "
        "print(sorted(heavy), __version__)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[]", __version__]
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        package.nothing  # noqa: B018


def test_every_command_registers_and_shows_its_help() -> None:
    parser = build_parser(load_all=True)
    assert parser.parse_args(["models", "pull", "o/r:Q8_0"]).model == "o/r:Q8_0"
    for name in COMMANDS:
        proc = textcoder(name, "--help")
        assert proc.returncode == 0 and f"usage: textcoder {name}" in proc.stdout, proc.stderr
