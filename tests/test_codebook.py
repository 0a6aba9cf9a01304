"""Loading codebooks: the schema, the shorthand, and errors that name file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from textcoder import Codebook, CodebookError

FULL = """\
name: tweet-sentiment
instructions: |
  Act as a sentiment classification system.
variables:
  - name: sentiment
    categories:
      - positive
      - label: negative
        description: the author dislikes or criticises something
        aliases: [neg]
      - neutral
examples:
  - text: "What a game last night!"
    codes: {sentiment: positive}
template: "Tweet: {text}"
"""


def test_full_codebook(tmp_path: Path) -> None:
    p = tmp_path / "cb.yaml"
    p.write_text(FULL)
    book = Codebook.from_yaml(p)
    assert book.name == "tweet-sentiment"
    var = book.variables[0]
    assert var.name == "sentiment"
    assert var.labels == ["positive", "negative", "neutral"]
    assert var.categories[1].description == "the author dislikes or criticises something"
    assert var.find("NEG") is var.categories[1]
    assert book.examples[0].codes == {"sentiment": "positive"}
    assert book.render("hi") == "Tweet: hi"
    assert book.path == str(p) and book.sha256 is not None and len(book.sha256) == 64


def test_shorthand_one_variable() -> None:
    book = Codebook.from_yaml_text("instructions: x\ncategories: [yes, no]\n")
    assert [v.name for v in book.variables] == ["label"]
    assert book.variables[0].labels == ["yes", "no"]
    named = Codebook.from_yaml_text("instructions: x\nvariable: stance\ncategories: [a, b]\n")
    assert named.variables[0].name == "stance"


def test_default_template() -> None:
    book = Codebook.from_yaml_text("instructions: x\ncategories: [a, b]\n")
    assert book.render("hello") == "Text: '''hello'''"


def test_numeric_codes_in_examples_are_labels() -> None:
    book = Codebook.from_yaml_text(
        "instructions: x\ncategories: [1, 2, 3]\nexamples:\n  - text: t\n    codes: {label: 2}\n"
    )
    assert book.variables[0].labels == ["1", "2", "3"]
    assert book.examples[0].codes == {"label": "2"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("categories: [a, b]\n", "cb.yaml:1: instructions: is required"),
        ("instructions: x\ncategories: [a, b\n", "cb.yaml:3: not valid YAML"),
        ("- just\n- a list\n", "cb.yaml: a codebook is a YAML mapping"),
        (
            "instructions: x\nvariables:\n  - name: v\n    categories:\n      - a\n",
            "cb.yaml:3: variables[0]: variable 'v' needs at least two categories",
        ),
        (
            "instructions: x\nvariables:\n  - name: v\n    categories: [a, b]\n    colour: red\n",
            "cb.yaml:5: variables[0].colour: is not a codebook field",
        ),
        (
            "instructions: x\nvariables:\n  - name: v\n    categories:\n      - a\n"
            "      - label: b\n        descr: typo\n",
            "cb.yaml:7: variables[0].categories[1].descr: is not a codebook field",
        ),
        (
            "instructions: x\ncategories: [a, b]\nexamples:\n  - text: t\n    codes: {label: c}\n",
            "cb.yaml:5: examples[0].codes.label: 'c' is not one of the categories ['a', 'b']",
        ),
        (
            "instructions: x\ncategories: [a, b]\ntemplate: no placeholder\n",
            "cb.yaml:3: template: the template must contain {text}",
        ),
        (
            "instructions: x\ncategories: [a, A]\n",
            "cb.yaml:2: categories: variable 'label': 'A' names",
        ),
        ("instructions: x\ncategories: [a, '']\n", "cb.yaml:2: categories[1].label"),
        ("instructions: x\nvariables: []\ncolour: 1\n", "cb.yaml:"),
    ],
)
def test_errors_name_file_line_and_field(text: str, expected: str) -> None:
    with pytest.raises(CodebookError) as info:
        Codebook.from_yaml_text(text, source="cb.yaml")
    message = str(info.value)
    assert expected in message
    assert "\n" not in message


def test_missing_file_is_a_codebook_error(tmp_path: Path) -> None:
    with pytest.raises(CodebookError, match="cannot read"):
        Codebook.from_yaml(tmp_path / "nope.yaml")


def test_alias_clash_is_an_error() -> None:
    with pytest.raises(CodebookError, match="names both"):
        Codebook.from_yaml_text(
            "instructions: x\ncategories:\n  - label: a\n    aliases: [b]\n  - b\n"
        )
