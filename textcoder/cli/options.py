"""Options several commands share, so they read the same everywhere."""

from __future__ import annotations

import argparse


def add_model_options(p: argparse.ArgumentParser) -> None:
    """--model, --base-url, --api-key, --backend."""
    p.add_argument(
        "--model",
        "-m",
        help="a local model alias or GGUF path (default: the embedded smollm2), "
        "or a model name on the server",
    )
    p.add_argument(
        "--base-url",
        action="append",
        help="an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1; give it several times "
        "for several servers of one model (default: $OPENAI_BASE_URL, comma-separated)",
    )
    p.add_argument("--api-key", help="the server's key (default: $OPENAI_API_KEY)")
    p.add_argument("--backend", choices=["local", "openai"], help="force an engine")


def add_table_options(p: argparse.ArgumentParser) -> None:
    """--text-column, --id-column: where a table's texts and row ids are."""
    p.add_argument("--text-column", default="text", help="the column holding the texts")
    p.add_argument("--id-column", help="a column that identifies rows (default: the row number)")


def add_codebook_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--codebook", "-c", required=True, help="the codebook YAML file")
