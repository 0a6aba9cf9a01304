"""Turning a codebook and a text into chat messages in OpenAI's format.

Everything before the last message (instructions, scheme, examples) is the same for every
text, so engines can cache it; only the final user message changes.
"""

from __future__ import annotations

from collections.abc import Sequence

from .backends.base import Message
from .codebook import Codebook, Variable
from .scoring.multi import NO, YES

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
    codebook: Codebook,
    text: str,
    variable: Variable | None = None,
    prefix: Sequence[Message] | None = None,
) -> list[Message]:
    """The full request for one text: the shared prefix, then the text in the template.

    `prefix`: `prefix_messages(codebook, variable)` already built (a run builds it once)."""
    return [
        *(prefix if prefix is not None else prefix_messages(codebook, variable)),
        {"role": "user", "content": codebook.render(text)},
    ]


def multi_label_system(codebook: Codebook, variable: Variable, label: str) -> str:
    """The system message for one category of a multi-label variable: a yes/no question."""
    cat = next(c for c in variable.categories if c.label == label)
    parts = [codebook.instructions.strip()]
    if variable.instructions:
        parts.append(variable.instructions.strip())
    about = f"'{cat.label}'" + (f" ({cat.description.strip()})" if cat.description else "")
    parts.append(f"Question: does the text belong to the category {about}?")
    parts.append("Answer with yes or no only, and nothing else.")
    return "\n\n".join(parts)


def multi_label_messages(
    codebook: Codebook, variable: Variable, label: str, text: str
) -> list[Message]:
    """One yes/no request for one category of a multi-label variable; examples answer it too."""
    return [
        *multi_label_prefix(codebook, variable, label),
        {"role": "user", "content": codebook.render(text)},
    ]


def multi_label_prefix(codebook: Codebook, variable: Variable, label: str) -> list[Message]:
    """The shared part of one category's yes/no request: the question and the examples."""
    messages: list[Message] = [
        {"role": "system", "content": multi_label_system(codebook, variable, label)}
    ]
    for ex in codebook.examples:
        if variable.name not in ex.codes:
            continue
        given = {p.strip().lower() for p in ex.codes[variable.name].split(";") if p.strip()}
        messages.append({"role": "user", "content": codebook.render(ex.text)})
        messages.append({"role": "assistant", "content": YES if label.lower() in given else NO})
    return messages


def joint_messages(codebook: Codebook, text: str) -> list[Message]:
    """All variables in one request, answered as a JSON object (`mode: joint`)."""
    return [*joint_prefix(codebook), {"role": "user", "content": codebook.render(text)}]


def joint_prefix(codebook: Codebook) -> list[Message]:
    """The shared part of a joint request: every variable's scheme, and the examples."""
    import json

    parts = [codebook.instructions.strip()]
    for var in codebook.variables:
        lines = [f"Variable {var.name}" + (" (one or more categories)" if var.multi else "") + ":"]
        if var.instructions:
            lines.append(var.instructions.strip())
        for cat in var.categories:
            lines.append(
                f"- {cat.label}: {cat.description.strip()}" if cat.description else f"- {cat.label}"
            )
        parts.append("\n".join(lines))
    keys = ", ".join(f'"{v.name}"' for v in codebook.variables)
    parts.append(
        f"Answer with a JSON object with the keys {keys}, each set to a category exactly as "
        "written above (a list of categories for variables that take several), and nothing else."
    )
    messages: list[Message] = [{"role": "system", "content": "\n\n".join(parts)}]
    for ex in codebook.examples:
        if not all(v.name in ex.codes for v in codebook.variables):
            continue
        answer: dict[str, object] = {}
        for var in codebook.variables:
            code = ex.codes[var.name]
            names = [p.strip() for p in code.split(";") if p.strip()] if var.multi else [code]
            labels = [(var.find(n).label if var.find(n) else n) for n in names]  # type: ignore[union-attr]
            answer[var.name] = labels if var.multi else labels[0]
        messages.append({"role": "user", "content": codebook.render(ex.text)})
        messages.append({"role": "assistant", "content": json.dumps(answer, ensure_ascii=False)})
    return messages
