"""Writing a coding run's manifest beside its output (the online and the batch command)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..coder import Coder


def write_manifest(
    coder: Coder, args: argparse.Namespace, out: Path, store: Path, **extra: Any
) -> tuple[dict[str, Any], Path]:
    """The run's manifest, written beside the output; it and its path."""
    manifest = coder.manifest(
        input={
            "path": str(args.data),
            "text_column": args.text_column,
            "id_column": args.id_column,
        },
        output=str(out),
        store=str(store),
        **extra,
    )
    path = out.with_name(out.name + ".manifest.json")
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest, path
