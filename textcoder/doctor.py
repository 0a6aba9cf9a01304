"""`textcoder doctor`: the versions and engine settings that matter, and one real coding run of
the embedded model in a child process, so a crash in llama.cpp's kernels is reported, not fatal.

Run as `python -m textcoder.doctor --child MODEL`, this module is that child: it loads the model
(with the start-up self-check of exact scoring), codes one text and prints one JSON line.
"""

from __future__ import annotations

import json
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from ._version import __version__

#: how long the child may take to load the model and code one text
CHILD_TIMEOUT = 300.0
_TEXT = "I loved the new Batman movie!"
_CODEBOOK = {
    "instructions": "Classify the sentiment of the text.",
    "variables": [{"name": "sentiment", "categories": ["positive", "negative", "neutral"]}],
}
_REINSTALL = (
    "reinstall the engine without native CPU tuning: "
    'CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --force-reinstall --no-cache-dir '
    "'llama-cpp-python{range}'"
)


@dataclass
class Report:
    """What `doctor` found: lines to print, and the one-line diagnosis when something failed."""

    lines: list[str] = field(default_factory=list)
    problem: str | None = None


def system_lines() -> list[str]:
    """textcoder, Python and llama-cpp-python versions, the CPU features, the engine settings."""
    from .backends.llama.load import ENV_EXTRA_BUFTS, extra_bufts, supports_extra_bufts_switch
    from .backends.llama.selfcheck import installed_version, supported_range

    lines = [
        f"textcoder {__version__}",
        f"python {platform.python_version()} ({sys.executable})",
        f"llama-cpp-python {installed_version()} (textcoder supports {supported_range()})",
        f"cpu: {platform.machine()}; llama.cpp uses: {cpu_features()}",
    ]
    try:
        extra = extra_bufts()
    except ValueError as exc:  # the child's load fails on it too, and says so in one line
        bufts = f"unknown ({exc})"
    else:
        if not supports_extra_bufts_switch():
            bufts = "this llama-cpp-python cannot turn them off"
        elif extra:
            bufts = f"on ({ENV_EXTRA_BUFTS}=1)"
        else:
            bufts = f"off (weights are not repacked; {ENV_EXTRA_BUFTS}=1 turns them on)"
    lines.append(f"engine: llama.cpp extra CPU buffer types {bufts}")
    return lines


def cpu_features() -> str:
    """The CPU features llama.cpp reports as in use (`FEATURE = 1` in its system info)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info()
    text = info.decode() if isinstance(info, bytes) else str(info)
    names = [
        part.split("=")[0].split(":")[-1].strip()
        for part in text.replace("|", ";").split(";")
        if part.strip().endswith("= 1")
    ]
    return " ".join(dict.fromkeys(names)) or "(none reported)"


def diagnose(model: str | None) -> Report:
    """Every check: the versions, then the child's run of the model."""
    from .backends.llama.selfcheck import supported_range

    report = Report(lines=system_lines())
    cmd = [sys.executable, "-m", "textcoder.doctor", "--child", model or ""]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        report.problem = f"the model did not load and code one text in {CHILD_TIMEOUT:.0f} s"
        return report
    took = time.monotonic() - started
    got = _last_json(proc.stdout)
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        fix = _REINSTALL.format(range=supported_range())
        report.problem = (
            f"the engine crashed ({name}) while loading the model or coding a text: "
            f"llama.cpp's CPU kernels fail on this machine; unset TEXTCODER_EXTRA_BUFTS if set, "
            f"else {fix}"
        )
    elif got is None or "error" in got:
        detail = got["error"] if got else (proc.stderr.strip().splitlines() or ["no output"])[-1]
        report.problem = str(detail)
    else:
        report.lines.append(f"model: {got['model']} ({got['path']})")
        report.lines.append(
            f"self-check: exact scores from a cached prefix equal scores from scratch "
            f"(largest difference {got['difference']:.2g})"
        )
        report.lines.append(
            f"coded {_TEXT!r} -> {got['label']} (p={got['p']:.2f}) in {took:.1f} s "
            f"(child process, model load included)"
        )
    return report


def _last_json(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def child(model: str | None) -> dict[str, Any]:
    """Load the model (the self-check runs), code one text, and say what happened."""
    from ._exceptions import TextcoderError
    from .backends.llama import LocalBackend
    from .backends.llama.selfcheck import measured_difference
    from .codebook import Codebook
    from .coder import Coder

    try:
        backend = LocalBackend(model or None)
        difference = measured_difference(backend.engine)  # checked as the backend started
        coder = Coder(Codebook.from_dict(_CODEBOOK), backend=backend)
        result = coder.code(_TEXT)
    except TextcoderError as exc:
        return {"error": str(exc)}
    var = result.variables["sentiment"]
    return {
        "model": backend.model,
        "path": str(backend.info.path),
        "difference": difference,
        "label": var.label,
        "p": max(var.probs.values()),
    }


if __name__ == "__main__":  # pragma: no cover - run by `diagnose` in a child process
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(child(sys.argv[2])), flush=True)
