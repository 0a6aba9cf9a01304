"""The engine's safety on this machine: safe load settings, the start-up self-check of exact
scoring (it refuses a build that scores a cached prefix differently), and `textcoder doctor`."""

from __future__ import annotations

import re
import signal
from collections.abc import Sequence

import pytest

from textcoder.backends.base import Message
from textcoder.backends.llama import load
from textcoder.backends.llama.selfcheck import (
    TOLERANCE,
    EngineCheckError,
    EnginePaths,
    installed_version,
    largest_difference,
    supported_range,
    verify_exact,
)
from textcoder.doctor import diagnose

from .conftest import textcoder


class SplitPaths:
    """A stand-in engine whose cached path drifts from its from-scratch path by `drift`."""

    def __init__(self, drift: float) -> None:
        self.drift = drift
        self.calls: list[str] = []

    def cached(self, messages: Sequence[Message], labels: Sequence[str]) -> Sequence[float]:
        self.calls.append("cached")
        return [-1.0 - i + self.drift for i in range(len(labels))]

    def scratch(self, messages: Sequence[Message], labels: Sequence[str]) -> Sequence[float]:
        self.calls.append("scratch")
        return [-1.0 - i for i in range(len(labels))]


def test_the_check_refuses_an_engine_whose_cached_scores_differ() -> None:
    paths = SplitPaths(drift=0.02)
    with pytest.raises(EngineCheckError) as caught:
        verify_exact(paths)
    message = str(caught.value)
    assert "\n" not in message
    assert f"llama-cpp-python {installed_version()}" in message
    assert supported_range() in message and "pip install" in message
    assert paths.calls == ["cached", "cached", "scratch"]  # warmed, then compared


def test_the_check_passes_an_engine_within_tolerance() -> None:
    verify_exact(SplitPaths(drift=TOLERANCE / 10))


def test_the_installed_engine_scores_a_cached_prefix_like_a_fresh_prompt(local_backend) -> None:  # type: ignore[no-untyped-def]
    assert largest_difference(EnginePaths(local_backend.exact_scorer())) <= TOLERANCE


def test_supported_range_is_the_declared_bound() -> None:
    assert re.fullmatch(r">=0\.3\.\d+,<=0\.3\.\d+|<=0\.3\.\d+,>=0\.3\.\d+", supported_range())


def test_extra_buffer_types_are_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(load.ENV_EXTRA_BUFTS, raising=False)
    assert load.extra_bufts() is False
    monkeypatch.setenv(load.ENV_EXTRA_BUFTS, "1")
    assert load.extra_bufts() is True
    monkeypatch.setenv(load.ENV_EXTRA_BUFTS, "maybe")
    with pytest.raises(ValueError, match="TEXTCODER_EXTRA_BUFTS='maybe'"):
        load.extra_bufts()


def test_doctor_reports_versions_and_codes_one_text() -> None:
    proc = textcoder("doctor")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"llama-cpp-python {installed_version()} (textcoder supports" in out
    assert "extra CPU buffer types off" in out
    assert "self-check: exact scores from a cached prefix equal" in out
    assert re.search(r"coded 'I loved the new Batman movie!' -> (positive|negative|neutral)", out)
    assert out.rstrip().endswith("textcoder doctor: all good")


def test_doctor_names_a_crash_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the extra buffer types on, native builds die on AMX CPUs: the parent says so."""
    monkeypatch.setenv(load.ENV_EXTRA_BUFTS, "1")
    report = diagnose(None)
    assert "extra CPU buffer types on" in "\n".join(report.lines)
    if report.problem is None:  # this CPU runs them: the child coded its text
        assert any(line.startswith("coded ") for line in report.lines)
    else:
        assert "\n" not in report.problem
        names = "|".join(s.name for s in signal.Signals)
        assert re.match(rf"the engine crashed \(({names})\)", report.problem)
        assert "unset TEXTCODER_EXTRA_BUFTS" in report.problem
