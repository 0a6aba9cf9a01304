"""`textcoder models pull` and `--model hf:...`: through the real CLI and the unchanged
huggingface_hub client, against a loopback stand-in for the Hub (tests/fake_hub.py) that
serves the embedded GGUF under a fake repo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from textcoder import ModelError
from textcoder.hub import (
    HubFile,
    HubRef,
    choose,
    is_hub_name,
    matches,
    parse_ref,
    quant_tag,
    split_info,
)
from textcoder.models import resolve_model

from .conftest import EXAMPLES, ROOT
from .fake_hub import FakeHub

REPO = "fake/SmolLM2-135M-Instruct-GGUF"
Q4 = "SmolLM2-135M-Instruct-Q4_K_M.gguf"
Q8 = "SmolLM2-135M-Instruct-Q8_0.gguf"
BOOK = str(EXAMPLES / "sentiment.yaml")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The embedded GGUF as the repo's Q4_K_M file; a different, smaller file as its Q8_0."""
    folder = tmp_path_factory.mktemp("repo")
    q8 = folder / Q8
    with resolve_model(None).path.open("rb") as f:
        q8.write_bytes(f.read(2_000_000) + b"a different quant")
    readme = folder / "README.md"
    readme.write_text("# a fake repo\n")
    return {Q4: resolve_model(None).path, Q8: q8, "README.md": readme}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m textcoder ARGS` with the Hub's variables set as a user would set them."""
    full = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "textcoder", *args], capture_output=True, text=True, env=full
    )


def hub_env(hub: FakeHub | None, home: Path, **extra: str) -> dict[str, str]:
    env = {"HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_TOKEN": ""}
    env["HF_ENDPOINT"] = hub.url if hub else "http://127.0.0.1:9"  # nothing listens on 9
    env.update(extra)
    return env


@pytest.fixture
def hub(files: dict[str, Path]) -> Iterator[FakeHub]:
    with FakeHub({REPO: files}) as server:
        yield server


def test_pull_picks_the_file_by_tag_and_a_second_pull_downloads_nothing(
    hub: FakeHub, tmp_path: Path, files: dict[str, Path]
) -> None:
    env = hub_env(hub, tmp_path / "hf")
    proc = run(env, "models", "pull", f"{REPO}:q8_0")  # any case
    assert proc.returncode == 0, proc.stderr
    name, _, path, note = proc.stdout.strip().split("\t")
    assert name == f"hf:{REPO}:SmolLM2-135M-Instruct-Q8_0" and note == "(1 of 1 files downloaded)"
    assert Path(path).read_bytes() == files[Q8].read_bytes()
    assert Path(path).is_relative_to(
        tmp_path / "hf" / "hub" / "models--fake--SmolLM2-135M-Instruct-GGUF"
    )
    assert [g.status for g in hub.blob_gets(Q8)] == [200] and hub.blob_gets(Q4) == []
    before = len(hub.log)
    again = run(env, "models", "pull", f"hf:{REPO}:Q8_0")
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip().endswith("(already pulled)")
    assert [e.path for e in hub.log[before:] if "agent-harnesses" not in e.path] == [
        f"/api/models/{REPO}/revision/main"  # the listing only: no HEAD, no download
    ]
    listing = run(env, "models")
    assert f"hf:{REPO}:Q8_0\t2.0 MB\t{path}" in listing.stdout


def test_first_use_pulls_resumes_a_dropped_download_and_codes_then_works_offline(
    files: dict[str, Path], tmp_path: Path
) -> None:
    """`code --model hf:REPO` pulls the default Q4_K_M on first use; the connection drops
    25 MB into the file and the client resumes where it stopped; the pulled model codes the
    example table; then, with the Hub gone and HF_HUB_OFFLINE=1, it is found in the cache."""
    size = files[Q4].stat().st_size
    with FakeHub({REPO: files}, cut={Q4: 25_000_000}) as hub:
        env = hub_env(hub, tmp_path / "hf")
        out = tmp_path / "coded.csv"
        proc = run(
            env,
            "code",
            str(EXAMPLES / "tweets.csv"),
            "-c",
            BOOK,
            "-m",
            f"hf:{REPO}",
            "-o",
            str(out),
        )
        assert proc.returncode == 0, proc.stderr
        gets = hub.blob_gets(Q4)
    assert f"pulling {Q4} (98.4 MB) from {REPO}" in proc.stderr
    assert [g.status for g in gets] == [200, 206]
    assert gets[0].sent == 25_000_000 and gets[0].range is None
    resumed_at = int((gets[1].range or "").removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= 25_000_000 and gets[1].sent == size - resumed_at
    coded = pd.read_csv(out)
    assert len(coded) == 30 and coded["sentiment"].notna().all()
    manifest = json.loads(out.with_name(out.name + ".manifest.json").read_text())
    assert manifest["model"] == f"hf:{REPO}:SmolLM2-135M-Instruct-Q4_K_M"

    offline = hub_env(None, tmp_path / "hf", HF_HUB_OFFLINE="1")
    small = tmp_path / "two.csv"
    small.write_text("text\nI love it\nThe bus is late again\n")
    again = run(offline, "code", str(small), "-c", BOOK, "-m", f"hf:{REPO}:Q4_K_M", "-q")
    assert again.returncode == 0, again.stderr
    assert len(pd.read_csv(tmp_path / "two.coded.csv")) == 2
    listing = run(offline, "models")
    assert f"hf:{REPO}:Q4_K_M\t98.4 MB\t" in listing.stdout
    missing = run(offline, "models", "pull", "fake/other-GGUF")
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1
    assert "HF_HUB_OFFLINE" in missing.stderr and "not in the Hugging Face cache" in missing.stderr


def test_a_sharded_model_is_pulled_whole(tmp_path: Path) -> None:
    shards = {}
    for i in (1, 2, 3):
        part = tmp_path / f"part{i}"
        part.write_bytes(f"shard {i} ".encode() * 1000)
        shards[f"Q4_K_M/Big-Q4_K_M-0000{i}-of-00003.gguf"] = part
    other = tmp_path / "other"
    other.write_bytes(b"another quant")
    shards["Big-Q8_0.gguf"] = other
    with FakeHub({"fake/Big-GGUF": shards}) as hub:
        env = hub_env(hub, tmp_path / "hf")
        proc = run(env, "models", "pull", "fake/Big-GGUF", "-q")
        assert proc.returncode == 0, proc.stderr
        assert len(hub.blob_gets()) == 3  # the three parts, not the Q8_0 file
    path = Path(proc.stdout.split("\t")[2])
    assert path.name == "Big-Q4_K_M-00001-of-00003.gguf"
    assert sorted(p.name for p in path.parent.iterdir()) == [
        f"Big-Q4_K_M-0000{i}-of-00003.gguf" for i in (1, 2, 3)
    ]
    listing = run(hub_env(None, tmp_path / "hf", HF_HUB_OFFLINE="1"), "models")
    assert "hf:fake/Big-GGUF:Q4_K_M\t24.0 kB\t" in listing.stdout
    assert "(3 parts)" in listing.stdout


def test_several_matches_and_a_wrong_hash_are_one_line_errors(
    files: dict[str, Path], tmp_path: Path
) -> None:
    repo = {Q4: files[Q8], "SmolLM2-135M-Instruct-UD-Q4_K_M.gguf": files["README.md"]}
    with FakeHub({"fake/two-GGUF": repo}, wrong_sha256={Q4}) as hub:
        env = hub_env(hub, tmp_path / "hf")
        several = run(env, "models", "pull", "fake/two-GGUF")
        assert several.returncode == 1 and several.stderr.count("\n") == 1, several.stderr
        assert f"2 files match Q4_K_M: {Q4}, SmolLM2-135M-Instruct-UD-Q4_K_M.gguf" in several.stderr
        bad = run(env, "models", "pull", "fake/two-GGUF:SmolLM2-135M-Instruct-Q4_K_M", "-q")
        assert bad.returncode == 1, bad.stderr
        assert bad.stderr.strip().endswith("it was removed, pull it again")
        assert "sha256" in bad.stderr and "Traceback" not in bad.stderr
    blobs = tmp_path / "hf" / "hub" / "models--fake--two-GGUF" / "blobs"
    assert list(blobs.iterdir()) == []


# choosing a file, without a Hub -----------------------------------------------------------


def listing(*paths: str) -> list[HubFile]:
    return [HubFile(p) for p in paths]


def test_names_and_tags_read_as_llama_cpp_reads_them() -> None:
    assert parse_ref("hf:Qwen/Qwen2.5-1.5B-Instruct-GGUF:q4_k_m") == HubRef(
        "Qwen/Qwen2.5-1.5B-Instruct-GGUF", "q4_k_m"
    )
    assert parse_ref("https://huggingface.co/owner/repo") == HubRef("owner/repo")
    assert is_hub_name("hf.co/owner/repo:Q8_0") and not is_hub_name("owner/repo")
    with pytest.raises(ModelError, match="expected owner/repo"):
        parse_ref("hf:just-a-name")
    assert split_info("a/M-Q4_K_M-00002-of-00005.gguf") == ("a/M-Q4_K_M", 2, 5)
    assert (
        quant_tag("m.Q5_K_S.gguf") == "Q5_K_S" and quant_tag("m-q8_0-00001-of-00002.gguf") == "Q8_0"
    )
    assert matches("m-Q4_K_M.gguf", "q4_k_m") and not matches("m-IQ4_K_M.gguf", "Q4_K_M")


def test_choose_defaults_falls_back_and_skips_what_is_not_a_model() -> None:
    files = listing("m-Q8_0.gguf", "m-F16.gguf", "mmproj-m-Q4_K_M.gguf", "README.md")
    assert [f.path for f in choose(HubRef("o/r"), files)] == ["m-Q8_0.gguf"]  # no Q4_K_M
    assert [f.path for f in choose(HubRef("o/r", "f16"), files)] == ["m-F16.gguf"]
    only = listing("m-BF16.gguf", "README.md")
    assert [f.path for f in choose(HubRef("o/r"), only)] == ["m-BF16.gguf"]
    with pytest.raises(ModelError, match=r"no file matches Q4_K_M or Q8_0; the repo has: m-F16"):
        choose(HubRef("o/r"), listing("m-F16.gguf", "m-BF16.gguf"))
    with pytest.raises(ModelError, match="no file matches Q2_K"):
        choose(HubRef("o/r", "Q2_K"), files)
    broken = listing("m-Q4_K_M-00001-of-00002.gguf")
    with pytest.raises(ModelError, match="1 of 2 parts, but some are missing"):
        choose(HubRef("o/r"), broken)
