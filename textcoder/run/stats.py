"""What a run did (for the manifest and the closing summary), and a request's usage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


def now() -> str:
    """The time now, as manifests record it."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Usage:
    """What the engine reported for one unit's requests: model, fingerprint, tokens."""

    model: str | None = None
    system_fingerprint: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: Usage) -> None:
        """Fold another request's usage in (the first model and fingerprint are kept)."""
        self.model = self.model or other.model
        self.system_fingerprint = self.system_fingerprint or other.system_fingerprint
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens


@dataclass
class RunStats:
    """What a run did, for the manifest and the closing summary."""

    rows: int = 0
    requests: int = 0
    reused: int = 0
    retries: int = 0
    #: now: requests waiting to be retried, and whether a slow row holds new rows back
    retrying: int = 0
    held: bool = False
    failed: int = 0
    #: rows that failed for a reason a rerun cannot fix (a text over the context, a refusal)
    failed_permanent: int = 0
    empty: int = 0
    truncated: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    models: set[str] = field(default_factory=set)
    fingerprints: set[str] = field(default_factory=set)
    started: str = field(default_factory=now)
    ended: str | None = None
    seconds: float = 0.0

    def count(self, usage: Usage, requests: int = 1) -> None:
        """Count answered requests."""
        self.requests += requests
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        if usage.model:
            self.models.add(usage.model)
        if usage.system_fingerprint:
            self.fingerprints.add(usage.system_fingerprint)

    def absorb(self, other: RunStats) -> None:
        """Count another run's requests and tokens in this one (the content-free inputs a
        calibration codes belong to the run they calibrate)."""
        self.requests += other.requests
        self.reused += other.reused
        self.retries += other.retries
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.models |= other.models
        self.fingerprints |= other.fingerprints

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "requests": self.requests,
            "answers_reused": self.reused,
            "retries": self.retries,
            "failed_rows": self.failed,
            "failed_rows_permanent": self.failed_permanent,
            "empty_texts": self.empty,
            "truncated_texts": self.truncated,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "models_answering": sorted(self.models),
            "system_fingerprints": sorted(self.fingerprints),
            "started": self.started,
            "ended": self.ended,
            "seconds": round(self.seconds, 3),
        }
