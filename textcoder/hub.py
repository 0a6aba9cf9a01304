"""GGUF models from the Hugging Face Hub, kept in huggingface_hub's own cache.

`owner/repo[:quant]` (or `hf:owner/repo[:quant]`) names a file as llama.cpp's `-hf` does:
the quant tag, in any case, must be a whole dot- or dash-separated part of the file's path
(default Q4_K_M, then Q8_0, then the repo's only model); several matches are an error that
lists them. A sharded GGUF (`-00001-of-0000N`) is pulled whole, and each downloaded file is
checked against the size and hash the Hub reports. huggingface_hub reads HF_ENDPOINT,
HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE and HF_TOKEN itself; it is imported inside the
functions that use it, so that finding local models stays cheap.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._exceptions import ModelError

PREFIX = "hf:"
#: the tags tried, in order, when a name gives none (llama.cpp's order)
DEFAULT_QUANTS = ("Q4_K_M", "Q8_0")
#: GGUF files that are not a model to run on its own (llama.cpp's gguf_filename_is_model)
NOT_MODELS = ("mmproj", "imatrix", "mtp-", "eagle3-", "dflash-", "dspark-")
REVISION = "main"
_SHARD = re.compile(r"^(.+)-(\d{5})-of-(\d{5})$", re.IGNORECASE)
_TAG = re.compile(r"[-.]([A-Za-z0-9_]+)$")
_REPO = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*/[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_HOSTS = ("https://huggingface.co/", "huggingface.co/", "hf.co/")


@dataclass(frozen=True)
class HubRef:
    """A model repo on the Hub and the quant tag that picks its file (None: the default)."""

    repo: str
    quant: str | None = None

    @property
    def label(self) -> str:
        return f"{PREFIX}{self.repo}" + (f":{self.quant}" if self.quant else "")


@dataclass(frozen=True)
class HubFile:
    """A file of a repo, with the size and hash the Hub reports (sha256 for LFS files, the
    git blob id for files kept in git)."""

    path: str
    size: int | None = None
    sha256: str | None = None
    git_sha1: str | None = None


@dataclass(frozen=True)
class Pulled:
    """The file(s) of one model in the cache: one GGUF, or every shard of one (first first)."""

    repo: str
    commit: str
    paths: tuple[Path, ...]
    downloaded: int = 0  # how many of them this call fetched

    @property
    def path(self) -> Path:
        return self.paths[0]

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.paths)

    @property
    def name(self) -> str:
        """What textcoder calls the model (manifests, store keys): a function of the file
        alone, so the same file has the same name whichever tag picked it."""
        return f"{PREFIX}{self.repo}:{split_info(self.path.name)[0]}"

    @property
    def source(self) -> str:
        return f"Hugging Face Hub ({self.repo}@{self.commit[:12]})"


def is_hub_name(name: str) -> bool:
    """Whether a --model value names a Hub model: `hf:owner/repo[:quant]`, or Ollama's
    `hf.co/owner/repo[:quant]` (or a huggingface.co URL)."""
    lower = name.lower()
    return lower.startswith(PREFIX) or any(lower.startswith(h) for h in _HOSTS)


def parse_ref(text: str) -> HubRef:
    """`[hf:]owner/repo[:quant]` (a huggingface.co URL or hf.co/ prefix also works)."""
    body = text[len(PREFIX) :] if text.lower().startswith(PREFIX) else text
    for host in _HOSTS:
        if body.lower().startswith(host):
            body = body[len(host) :]
    repo, _, quant = body.strip().partition(":")
    if not _REPO.match(repo):
        raise ModelError(
            f"{text!r} is not a Hugging Face model: expected owner/repo[:quant], "
            "e.g. Qwen/Qwen2.5-1.5B-Instruct-GGUF:Q4_K_M"
        )
    return HubRef(repo, quant or None)


# choosing the file --------------------------------------------------------------------------


def split_info(path: str) -> tuple[str, int, int]:
    """(name without .gguf and shard suffix, shard number, shard count) of a GGUF path."""
    stem = path[:-5] if path.lower().endswith(".gguf") else path
    m = _SHARD.match(stem)
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else (stem, 1, 1)


def quant_tag(path: str) -> str:
    """llama.cpp's tag of a file: the last dot- or dash-separated part of its name."""
    m = _TAG.search(split_info(path.rsplit("/", 1)[-1])[0])
    return m.group(1).upper() if m else ""


def is_model_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1].lower()
    return name.endswith(".gguf") and not any(k in name for k in NOT_MODELS)


def matches(path: str, tag: str) -> bool:
    """Whether `tag` is a whole dot-, dash- or slash-separated part of `path` (any case)."""
    return re.search(rf"(?:^|[/.-]){re.escape(tag)}[.-]", path, re.IGNORECASE) is not None


def choose(ref: HubRef, files: Sequence[HubFile], fallback: bool = True) -> list[HubFile]:
    """The file(s) `ref` names among a repo's files: one GGUF, or all shards of one.

    Without a tag, Q4_K_M is tried, then (with `fallback`) Q8_0 and the repo's only model.
    No match, or several, is a ModelError naming the files there are.
    """
    models = [f for f in files if is_model_file(f.path)]
    firsts = [f for f in models if split_info(f.path)[1] == 1]
    tags = [ref.quant] if ref.quant else list(DEFAULT_QUANTS if fallback else DEFAULT_QUANTS[:1])
    for tag in tags:
        hits = [f for f in firsts if matches(f.path, tag)]
        if len(hits) > 1:
            example = split_info(hits[0].path.rsplit("/", 1)[-1])[0]
            raise ModelError(
                f"{ref.label}: {len(hits)} files match {tag}: "
                f"{', '.join(f.path for f in hits)}; write more of the name as the tag, "
                f"e.g. {PREFIX}{ref.repo}:{example}"
            )
        if hits:
            return _shards(ref, models, hits[0])
    if fallback and ref.quant is None and len(firsts) == 1:
        return _shards(ref, models, firsts[0])
    wanted = ref.quant or " or ".join(tags)
    there = ", ".join(f.path for f in firsts) or "no GGUF model files"
    raise ModelError(f"{ref.label}: no file matches {wanted}; the repo has: {there}")


def _shards(ref: HubRef, models: Sequence[HubFile], first: HubFile) -> list[HubFile]:
    """`first` alone, or every part of the sharded GGUF it begins (all must be there)."""
    prefix, _, count = split_info(first.path)
    if count == 1:
        return [first]
    parts = sorted(
        (f for f in models if split_info(f.path)[0] == prefix and split_info(f.path)[2] == count),
        key=lambda f: split_info(f.path)[1],
    )
    if [split_info(f.path)[1] for f in parts] != list(range(1, count + 1)):
        raise ModelError(f"{ref.label}: {first.path} is 1 of {count} parts, but some are missing")
    return parts


# the Hub and the cache ------------------------------------------------------------------------


def offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE), as huggingface_hub read it."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _hub_error(ref: HubRef, exc: Exception) -> ModelError:
    """One line for what went wrong talking to the Hub."""
    from huggingface_hub import constants, errors

    if isinstance(exc, errors.GatedRepoError):
        why = "is gated: accept its terms on huggingface.co, then set HF_TOKEN"
    elif isinstance(exc, errors.RepositoryNotFoundError):
        why = "is not a model repo on the Hub (a private one needs HF_TOKEN)"
    elif isinstance(exc, errors.RevisionNotFoundError):
        why = f"has no branch {REVISION!r}"
    elif isinstance(exc, errors.OfflineModeIsEnabled):
        why = "is not in the cache, and HF_HUB_OFFLINE is set"
    elif isinstance(exc, errors.HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        why = f"could not be fetched: the Hub answered {status}: {str(exc).splitlines()[0]}"
    else:
        why = f"could not be fetched from {constants.ENDPOINT}: {type(exc).__name__}: {exc}"
    return ModelError(f"{ref.label} {why}")


def remote_files(ref: HubRef) -> tuple[str, list[HubFile]]:
    """The commit `main` points to on the Hub, and the repo's files with sizes and hashes."""
    from huggingface_hub import HfApi

    try:
        info = HfApi().model_info(ref.repo, revision=REVISION, files_metadata=True)
    except Exception as exc:  # network, HTTP and Hub errors alike become one line
        raise _hub_error(ref, exc) from None
    files = [
        HubFile(
            s.rfilename,
            s.size,
            s.lfs.sha256 if s.lfs else None,
            None if s.lfs else s.blob_id,
        )
        for s in info.siblings or []
    ]
    if not info.sha:
        raise ModelError(f"{ref.label}: the Hub gave no commit for {REVISION!r}")
    return info.sha, files


def cached_files(repo: str) -> tuple[str, dict[str, Path]] | None:
    """What the cache holds of `repo` at the commit `main` points to: commit, path -> file."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir()
    except CacheNotFound:
        return None
    for cached in info.repos:
        if cached.repo_type != "model" or cached.repo_id.lower() != repo.lower():
            continue
        for rev in cached.revisions:
            if REVISION in rev.refs:
                files = {
                    f.file_path.relative_to(rev.snapshot_path).as_posix(): f.file_path
                    for f in rev.files
                }
                return rev.commit_hash, files
    return None


def find_cached(ref: HubRef, fallback: bool = True) -> Pulled | None:
    """The model `ref` names if the cache has every file of it (no network), else None."""
    got = cached_files(ref.repo)
    if got is None:
        return None
    commit, paths = got
    listing = [HubFile(p, path.stat().st_size) for p, path in paths.items() if path.exists()]
    try:
        chosen = choose(ref, listing, fallback=fallback)
    except ModelError:
        return None
    return Pulled(ref.repo, commit, tuple(paths[f.path] for f in chosen))


# pulling ------------------------------------------------------------------------------------


def pull(
    ref: HubRef, *, progress: bool = True, note: Callable[[str], None] | None = None
) -> Pulled:
    """Download the file(s) `ref` names into the cache, unless they are there already, and
    check each download against the Hub's size and hash. With HF_HUB_OFFLINE: the cache only.

    `note` hears a line before each download; huggingface_hub draws the progress bar."""
    if offline():
        found = find_cached(ref)
        if found is None:
            raise ModelError(
                f"{ref.label} is not in the Hugging Face cache, and HF_HUB_OFFLINE is set: "
                f"pull it once while online (textcoder models pull {ref.label})"
            )
        return found
    commit, files = remote_files(ref)
    chosen = choose(ref, files)
    with _progress_bars(progress):
        fetched = [_fetch(ref, f, commit, note) for f in chosen]
    return Pulled(ref.repo, commit, tuple(p for p, _ in fetched), sum(new for _, new in fetched))


def _fetch(
    ref: HubRef, file: HubFile, commit: str, note: Callable[[str], None] | None
) -> tuple[Path, bool]:
    """One file into the cache (or found there): its path, and whether it was downloaded."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    there = try_to_load_from_cache(ref.repo, file.path, revision=commit)
    if isinstance(there, str) and file.size in (None, Path(there).stat().st_size):
        return Path(there), False
    if note is not None:
        note(f"pulling {file.path} ({human_size(file.size)}) from {ref.repo}")
    try:  # `main`, not the commit: the cache's refs/main is written as other tools expect
        path = Path(hf_hub_download(ref.repo, file.path, revision=REVISION))
    except Exception as exc:  # network, HTTP, size-consistency errors: one line
        raise _hub_error(ref, exc) from None
    if commit not in path.parts:
        raise ModelError(f"{ref.label} changed on the Hub during the pull; pull it again")
    verify(path, file)
    return path, True


class _progress_bars:
    """huggingface_hub's progress bars on or off for a `with` block, restored after."""

    def __init__(self, on: bool) -> None:
        self.on = on
        self.was_off = False

    def __enter__(self) -> None:
        from huggingface_hub.utils.tqdm import are_progress_bars_disabled, disable_progress_bars

        self.was_off = are_progress_bars_disabled()
        if not self.on:
            disable_progress_bars()

    def __exit__(self, *exc: object) -> None:
        from huggingface_hub.utils.tqdm import enable_progress_bars

        if not self.on and not self.was_off:
            enable_progress_bars()


def verify(path: Path, file: HubFile) -> None:
    """The size, then the sha256 (LFS) or git blob id the Hub reports; a file that differs is
    removed from the cache (blob and link), so that the next pull fetches it again."""
    size = path.stat().st_size
    problem = None
    if file.size is not None and size != file.size:
        problem = f"{size} bytes where the Hub reports {file.size}"
    elif file.sha256 and (got := file_digest(path, "sha256")) != file.sha256.lower():
        problem = f"sha256 {got} where the Hub reports {file.sha256}"
    elif file.git_sha1 and (got := file_digest(path, "git")) != file.git_sha1.lower():
        problem = f"git blob id {got} where the Hub reports {file.git_sha1}"
    if problem is None:
        return
    blob = path.resolve()
    path.unlink(missing_ok=True)
    blob.unlink(missing_ok=True)
    raise ModelError(f"{file.path}: the download has {problem}; it was removed, pull it again")


def file_digest(path: Path, kind: str) -> str:
    """sha256 of a file's bytes, or ("git") the id git gives the file as a blob."""
    h = hashlib.sha256() if kind == "sha256" else hashlib.sha1()
    if kind == "git":
        h.update(b"blob %d\0" % path.stat().st_size)
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def human_size(size: int | None) -> str:
    """Bytes as the Hub shows them (decimal units)."""
    if size is None:
        return "size unknown"
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000  # type: ignore[assignment]
    raise AssertionError("unreachable")


def resolve(name: str, progress: bool = True) -> Pulled:
    """A `hf:` --model value -> its file(s): from the cache if there, else pulled now.

    Online, a name without a tag finds only Q4_K_M in the cache; a repo without it is
    looked up on the Hub (so the same name picks the same file as `models pull`)."""
    ref = parse_ref(name)
    found = find_cached(ref, fallback=offline())
    if found is not None:
        return found

    def note(line: str) -> None:
        print(f"textcoder: {line} (once; then from the cache)", file=sys.stderr, flush=True)

    return pull(ref, progress=progress, note=note)


# what has been pulled -------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedModel:
    """A GGUF model in the Hugging Face cache (pulled by textcoder or by another tool)."""

    name: str
    repo: str
    commit: str
    paths: tuple[Path, ...]
    size: int


def list_pulled() -> list[CachedModel]:
    """Every GGUF model (a shard set counts once) at the revision a ref points to, by repo."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir()
    except CacheNotFound:
        return []
    found: list[CachedModel] = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id.lower()):
        if repo.repo_type != "model":
            continue
        for rev in sorted(repo.revisions, key=lambda r: sorted(r.refs)):
            if rev.refs:
                found.extend(
                    _models_in(repo.repo_id, rev.commit_hash, rev.snapshot_path, rev.files)
                )
    return found


def _models_in(repo: str, commit: str, snapshot: Path, files: Any) -> list[CachedModel]:
    """The models among one cached revision's files, each named by the shortest tag that
    picks it (its quant tag, else its whole name)."""
    paths = {f.file_path.relative_to(snapshot).as_posix(): f for f in files}
    listing = [HubFile(p, f.size_on_disk) for p, f in paths.items()]
    out = []
    for first in sorted(p for p in paths if is_model_file(p) and split_info(p)[1] == 1):
        tag = quant_tag(first)
        try:
            picked = choose(HubRef(repo, tag), listing) if tag else []
        except ModelError:
            picked = []
        if not picked or picked[0].path != first:
            tag = split_info(first.rsplit("/", 1)[-1])[0]
            try:
                picked = choose(HubRef(repo, tag), listing)
            except ModelError:  # an incomplete shard set
                continue
        size = sum(paths[f.path].size_on_disk for f in picked)
        parts = tuple(paths[f.path].file_path for f in picked)
        out.append(CachedModel(f"{PREFIX}{repo}:{tag}", repo, commit, parts, size))
    return out
