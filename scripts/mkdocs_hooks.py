"""MkDocs hook: the CLI reference page is written from textcoder's own parser at build time."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

MARKER = "<!-- cli-reference -->"
ROOT = Path(__file__).resolve().parent.parent


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the marker on reference/cli.md with every command's options."""
    if MARKER not in markdown:
        return markdown
    if str(ROOT) not in sys.path:  # this checkout's textcoder, installed or not
        sys.path.insert(0, str(ROOT))
    from textcoder.cli.reference import cli_markdown

    return markdown.replace(MARKER, cli_markdown())
