"""The exact chat messages a codebook makes for a text."""

from __future__ import annotations

import json
import subprocess
import sys

from textcoder import Codebook, build_messages
from textcoder.prompt import prefix_messages

from .conftest import EXAMPLES

BOOK = Codebook.from_yaml_text(
    """\
instructions: Classify the sentiment of the tweet.
variables:
  - name: sentiment
    categories:
      - positive
      - label: negative
        description: the author dislikes something
      - neutral
examples:
  - text: "What a game!"
    codes: {sentiment: positive}
  - text: "Bus at 9."
    codes: {sentiment: NEUTRAL}
"""
)


def test_exact_messages_with_examples() -> None:
    assert build_messages(BOOK, "I loved it") == [
        {
            "role": "system",
            "content": "Classify the sentiment of the tweet.\n\n"
            "Categories:\n- positive\n- negative: the author dislikes something\n- neutral\n\n"
            "Answer with the category only, exactly as written above, and nothing else.",
        },
        {"role": "user", "content": "Text: '''What a game!'''"},
        {"role": "assistant", "content": "positive"},
        {"role": "user", "content": "Text: '''Bus at 9.'''"},
        {"role": "assistant", "content": "neutral"},
        {"role": "user", "content": "Text: '''I loved it'''"},
    ]


def test_prefix_is_identical_for_every_text() -> None:
    a = build_messages(BOOK, "one")
    b = build_messages(BOOK, "two")
    assert a[:-1] == b[:-1] == prefix_messages(BOOK)
    assert a[-1] != b[-1]


def test_template_text_with_braces_is_kept_verbatim() -> None:
    msg = build_messages(BOOK, "json {like} this {text}")[-1]
    assert msg["content"] == "Text: '''json {like} this {text}'''"


def test_cli_prompt_prints_the_messages_as_json() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "textcoder",
            "prompt",
            "--codebook",
            str(EXAMPLES / "sentiment.yaml"),
            "--text",
            "I loved the new Batman movie!",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    messages = json.loads(out.stdout)
    book = Codebook.from_yaml(EXAMPLES / "sentiment.yaml")
    assert messages == build_messages(book, "I loved the new Batman movie!")
