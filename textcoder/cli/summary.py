"""Closing lines that `code` and its batch path share."""

from __future__ import annotations

from pathlib import Path


def failed_line(failed: int, permanent: int, store: Path, again: str | None = None) -> str:
    """The closing line for failed rows: what a rerun can fix (`again`: how), and what it
    cannot (a refusal, a text longer than the model's context)."""
    transient = failed - permanent
    parts = [f"textcoder: {failed} rows failed (see the *_error columns)"]
    if transient:
        how = again or "run the same command again to retry only those"
        parts.append(f"{transient} for a passing reason: {how} (answers are kept in {store})")
    if permanent:
        parts.append(
            f"{permanent} would fail the same way again (the server refused the request, or "
            "a text is longer than the model's context: --truncate cuts texts to fit)"
        )
    return "; ".join(parts)
