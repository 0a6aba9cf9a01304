"""OpenAI's legacy logprobs object (`tokens`, `token_logprobs`, `top_logprobs`,
`text_offset`), built from rows of prompt tokens (echo) and generated tokens, for whole
answers and for streamed chunks alike."""

from __future__ import annotations

import threading
from typing import Any

from ..backends.llama import LocalEngine
from ..backends.llama.echo import Position, PromptScorer
from ..backends.llama.generate import TokenOut

_SCORERS: dict[int, PromptScorer] = {}
_SCORERS_LOCK = threading.Lock()


def scorer(engine: LocalEngine) -> PromptScorer:
    """The engine's prompt scorer, made on first use (a llama.cpp context of its own)."""
    with _SCORERS_LOCK:
        if id(engine) not in _SCORERS:
            _SCORERS[id(engine)] = PromptScorer(engine)
        return _SCORERS[id(engine)]


def echo_text(engine: LocalEngine, prompt: Any, tokens: list[int]) -> str:
    """A prompt as echoed: the string sent, or its tokens' text."""
    if isinstance(prompt, str):
        return prompt
    return b"".join(engine.piece(t) for t in tokens).decode("utf-8", errors="replace")


#: one position: the token's bytes, its logprob (None: the first prompt token), its top
Row = tuple[bytes, float | None, dict[str, float] | None]


def token_row(t: TokenOut, k: int) -> Row:
    """A generated token's row: its top k alternatives and itself (only itself when k is 0)."""
    if not k:
        return t.piece, t.logprob, {piece_text(t.piece): t.logprob}
    return (
        t.piece,
        t.logprob,
        {piece_text(b): lp for _, b, lp in t.top} | {piece_text(t.piece): t.logprob},
    )


def echo_row(engine: LocalEngine, piece: bytes, rec: Position | None, k: int) -> Row:
    """A prompt token's row: its logprob and top k as scored (None for the first token)."""
    if rec is None:
        return piece, None, None
    top = {piece_text(engine.piece(i)): lp for i, lp in rec.top[:k]} | {
        piece_text(piece): rec.logprob
    }
    return piece, rec.logprob, top


def legacy_logprobs(rows: list[Row], start: int = 0) -> dict[str, Any]:
    """OpenAI's legacy shape: tokens, token_logprobs, top_logprobs, text_offset."""
    offsets, at = [], start
    for piece, _, _ in rows:
        offsets.append(at)
        at += len(piece_text(piece))
    return {
        "tokens": [piece_text(p) for p, _, _ in rows],
        "token_logprobs": [lp for _, lp, _ in rows],
        "top_logprobs": [top for _, _, top in rows],
        "text_offset": offsets,
    }


def piece_text(piece: bytes) -> str:
    """A token's text (a partial UTF-8 character as the replacement character)."""
    return piece.decode("utf-8", errors="replace")
