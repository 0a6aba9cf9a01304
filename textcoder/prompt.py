"""Turning a codebook and a text into chat messages in OpenAI's format.

Everything before the last message (instructions, scheme, examples) is the same for every
text, so engines can cache it; only the final user message changes.
"""

from __future__ import annotations

from typing import Literal, TypedDict

from .codebook import Codebook, Variable


class Message(TypedDict):
    """One chat message as OpenAI's Chat Completions API takes it."""

    role: Literal["system", "user", "assistant"]
    content: str


ANSWER_LINE = "Answer with the category only, exactly as written above, and nothing else."


def system_message(codebook: Codebook, variable: Variable) -> str:
    """The system message: the instructions, then the scheme, then how to answer."""
    parts = [codebook.instructions.strip()]
    if variable.instructions:
        parts.append(variable.instructions.strip())
    scheme = [f"Categories for {variable.name}:" if len(codebook.variables) > 1 else "Categories:"]
    for cat in variable.categories:
        scheme.append(
            f"- {cat.label}: {cat.description.strip()}" if cat.description else f"- {cat.label}"
        )
    parts.append("\n".join(scheme))
    parts.append(ANSWER_LINE)
    return "\n\n".join(parts)


def prefix_messages(codebook: Codebook, variable: Variable | None = None) -> list[Message]:
    """The shared prefix: the system message and each example as a user/assistant turn."""
    var = variable or codebook.variables[0]
    messages: list[Message] = [{"role": "system", "content": system_message(codebook, var)}]
    for ex in codebook.examples:
        if var.name not in ex.codes:
            continue
        cat = var.find(ex.codes[var.name])
        answer = cat.label if cat is not None else ex.codes[var.name]
        messages.append({"role": "user", "content": codebook.render(ex.text)})
        messages.append({"role": "assistant", "content": answer})
    return messages


def build_messages(
    codebook: Codebook, text: str, variable: Variable | None = None
) -> list[Message]:
    """The full request for one text: the shared prefix, then the text in the template."""
    return [
        *prefix_messages(codebook, variable),
        {"role": "user", "content": codebook.render(text)},
    ]
