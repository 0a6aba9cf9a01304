"""The request plan: every request a row needs, and the store key of what each unit sends.

A *unit* is what one or more variables' results are read from: one variable's request (or
its yes/no requests, one per category, for a multi-label variable, or its n samples), or the
one JSON request of a `mode: joint` row. Its store key hashes exactly what it sends (backend,
model, parameters, scoring, the variable, every request's messages), so a changed prompt is
never answered from a stale store. The runner, the cost estimate and `textcoder prompt` all
read this plan.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .backends.base import (
    Answer,
    Capabilities,
    ChatRequest,
    CompletionParams,
    ContinuationRequest,
    Message,
    Request,
)
from .codebook import Codebook, Example, Variable
from .prompt import joint_prefix, multi_label_prefix, prefix_messages
from .scoring import JointScorer, RequestContext, Scorer
from .scoring.joint import joint_request
from .scoring.multi import YES_NO, multi_result
from .scoring.result import VariableResult, with_fallback
from .store import canonical_json, request_hash

#: stands in for a row's text while a key's JSON is split around it
_PLACEHOLDER = "textcoder-key-placeholder-6b1f0d"
#: a text with what JSON escapes, to check that a split key equals the whole one
_CHECK = 'a "quoted" \\ line\nüñï \u2028 </end>'

Reader = Callable[[Sequence[Answer]], dict[str, VariableResult]]
#: examples_from hook: (text, row id) -> the examples to show before this text
ChooseExamples = Callable[[str, str | None], Sequence[Example]]


@dataclass(frozen=True)
class Unit:
    """Requests whose answers give some variables' results, and each variable's store key."""

    variables: tuple[Variable, ...]
    keys: tuple[str, ...]
    requests: tuple[Request, ...]
    read: Reader
    joint: bool = False


class _Keys:
    """Store keys of one kind of unit: the payload's JSON around the text is hashed once,
    then each text's key hashes on from there (the same digest as hashing it whole)."""

    def __init__(self, payload: Callable[[str], dict[str, Any]]) -> None:
        self.payload = payload
        whole = canonical_json(payload(_PLACEHOLDER))
        pieces = whole.split(_PLACEHOLDER.encode())
        self._head = hashlib.sha256(pieces[0])
        self._rest = pieces[1:]
        self._split = self._key(_CHECK) == request_hash(payload(_CHECK))

    def _key(self, text: str) -> str:
        h = self._head.copy()
        escaped = json.dumps(text, ensure_ascii=False)[1:-1].encode("utf-8", "surrogatepass")
        for part in self._rest:
            h.update(escaped)
            h.update(part)
        return str(h.hexdigest())

    def __call__(self, text: str) -> str:
        return self._key(text) if self._split else request_hash(self.payload(text))


class Planner:
    """Plans a codebook's rows: which requests each needs, with which store keys."""

    def __init__(
        self,
        codebook: Codebook,
        scorer: Scorer,
        params: CompletionParams,
        ctx: RequestContext,
        *,
        engine: tuple[str, str],
        threshold: float = 0.5,
        joint: bool = False,
        examples: ChooseExamples | None = None,
    ) -> None:
        self.codebook = codebook
        #: examples_from hook: per-text examples (textcoder/examples_select.py), else None
        self.choose_examples = examples
        self._engine = engine
        self.scorer = scorer
        self.params = params
        self.ctx = ctx
        self.threshold = threshold
        #: `mode: joint` rows are one JSON request while this holds
        self.joint = joint
        backend, model = engine
        self._identity = {"backend": backend, "model": model, "mode": codebook.mode}
        self._specs = {v.name: v.model_dump(mode="json") for v in codebook.variables}
        self._prefixes: dict[tuple[str, str | None], list[Message]] = {}
        self._keys: dict[tuple[str, str], _Keys] = {}
        self._joint = JointScorer()

    def plan(self, text: str, row_id: str | None = None) -> list[Unit]:
        """The units of one row (not for an empty text: nothing is sent for it); `row_id`
        keeps a labelled row from being its own example (examples_from)."""
        if self.choose_examples is not None:  # examples_from hook
            return [_system_cached(u) for u in self.for_text(text, row_id).plan(text)]
        if self.joint:
            return [self.joint_unit(text)]
        return [self.variable_unit(text, v) for v in self.codebook.variables]

    def for_text(self, text: str, row_id: str | None = None) -> Planner:
        """examples_from hook: the planner of the codebook with this text's chosen examples
        after its own (so its messages, and the keys that hash them, hold them)."""
        if self.choose_examples is None:
            return self
        chosen = tuple(self.choose_examples(text, row_id))
        book = self.codebook.model_copy(update={"examples": (*self.codebook.examples, *chosen)})
        return Planner(
            book,
            self.scorer,
            self.params,
            self.ctx,
            engine=self._engine,
            threshold=self.threshold,
            joint=self.joint,
        )

    def messages(self, text: str, variable: Variable, label: str | None = None) -> list[Message]:
        """One request's messages: the shared prefix (built once per run), then the text."""
        key = (variable.name, label)
        prefix = self._prefixes.get(key)
        if prefix is None:
            prefix = self._prefixes[key] = (
                multi_label_prefix(self.codebook, variable, label)
                if label is not None
                else prefix_messages(self.codebook, variable)
            )
        return [*prefix, {"role": "user", "content": self.codebook.render(text)}]

    def variable_unit(self, text: str, variable: Variable) -> Unit:
        """One variable's requests: one (or n samples), or one yes/no per category."""
        if not variable.multi:
            requests = self.scorer.requests(
                self.messages(text, variable), variable, self.params, self.ctx
            )
            read = self._single_reader(variable)
        else:
            per_label = [
                self.scorer.requests(
                    self.messages(text, variable, lab), YES_NO, self.params, self.ctx
                )
                for lab in variable.labels
            ]
            requests = [r for rs in per_label for r in rs]
            read = self._multi_reader(variable, [len(rs) for rs in per_label])
        key = self._key(variable, "multi" if variable.multi else "one", text)
        return Unit((variable,), (key,), tuple(requests), read)

    def _key(self, variable: Variable, kind: str, text: str) -> str:
        keys = self._keys.get((variable.name, kind))
        if keys is None:
            multi = kind == "multi"

            def payload(t: str) -> dict[str, Any]:
                messages = (
                    [self.messages(t, variable, lab) for lab in variable.labels]
                    if multi
                    else self.messages(t, variable)
                )
                return self._payload(variable, self.params, self.scorer.name, messages)

            keys = self._keys[(variable.name, kind)] = _Keys(payload)
        return keys(text)

    def _payload(
        self, variable: Variable, params: CompletionParams, scoring: str, messages: Any
    ) -> dict[str, Any]:
        """What a store key hashes (for one variable's unit, the same as textcoder 0.1's)."""
        return {
            **self._identity,
            "parameters": params.as_dict(),
            "scoring": scoring,
            "variable": self._specs[variable.name],
            "messages": messages,
        }

    def payload(self, text: str, variable: Variable) -> dict[str, Any]:
        """What the store key of a (single-label) variable's unit hashes for `text`."""
        return self._payload(variable, self.params, self.scorer.name, self.messages(text, variable))

    def _single_reader(self, variable: Variable) -> Reader:
        def read(answers: Sequence[Answer]) -> dict[str, VariableResult]:
            return {variable.name: with_fallback(self.scorer.read(answers, variable))}

        return read

    def _multi_reader(self, variable: Variable, counts: list[int]) -> Reader:
        def read(answers: Sequence[Answer]) -> dict[str, VariableResult]:
            parts, at = [], 0
            for n in counts:
                parts.append(self.scorer.read(answers[at : at + n], YES_NO))
                at += n
            return {variable.name: multi_result(variable, parts, self.threshold)}

        return read

    def joint_request(self, text: str) -> ChatRequest:
        """The one JSON request of a joint row."""
        prefix = self._prefixes.get(("", None))
        if prefix is None:
            prefix = self._prefixes[("", None)] = joint_prefix(self.codebook)
        messages: list[Message] = [
            *prefix,
            {"role": "user", "content": self.codebook.render(text)},
        ]
        logprobs = bool(self.ctx.capabilities.logprobs)
        return joint_request(self.codebook, messages, self.params, logprobs)

    def joint_unit(self, text: str) -> Unit:
        """Every variable from one JSON request (`mode: joint`); n of them when sampling
        on an engine that ignores `n`."""
        request = self.joint_request(text)
        requests = self._joint_samples(request)
        variables = self.codebook.variables

        def read(answers: Sequence[Answer]) -> dict[str, VariableResult]:
            return {v.name: self._joint.read(answers, v) for v in variables}

        keys = []
        for v in variables:
            k = self._keys.get((v.name, "joint"))
            if k is None:
                params = request.params

                def payload(
                    t: str, v: Variable = v, params: CompletionParams = params
                ) -> dict[str, Any]:
                    return self._payload(v, params, "joint", self.joint_request(t).messages)

                k = self._keys[(v.name, "joint")] = _Keys(payload)
            keys.append(k(text))
        return Unit(variables, tuple(keys), tuple(requests), read, joint=True)

    def _joint_samples(self, request: ChatRequest) -> list[Request]:
        return list(self.scorer.expand(request, self.ctx))

    def all_requests(self, text: str, row_id: str | None = None) -> list[Request]:
        """Every request of a row, in the order they are sent (`textcoder prompt`, estimate)."""
        return [r for unit in self.plan(text, row_id) for r in unit.requests]


def _system_cached(unit: Unit) -> Unit:
    """examples_from hook: with examples chosen per text, an engine caches the system message
    only; the examples are evaluated with the text (they change from text to text)."""
    requests = tuple(
        dataclasses.replace(r, n_prefix=1) if isinstance(r, ContinuationRequest) else r
        for r in unit.requests
    )
    return dataclasses.replace(unit, requests=requests)


def preview_planner(
    codebook: Codebook,
    scoring: str = "logprobs",
    *,
    engine: tuple[str, str] = ("openai", ""),
    capabilities: Capabilities | None = None,
    max_tokens: int = 10,
) -> Planner:
    """A planner for looking at requests without an engine (`textcoder prompt`, estimates):
    the capabilities assumed are those of a server with logprobs, n and json_schema."""
    from .scoring import Settings, get_scorer

    caps = capabilities or Capabilities(
        logprobs=True, top_logprobs=True, n=True, json_schema=True, continuations=True
    )
    scorer = get_scorer(scoring)
    head = codebook.template.split("{text}", 1)[0]
    return Planner(
        codebook,
        scorer,
        scorer.params(Settings(max_tokens=max_tokens)),
        RequestContext(caps, head),
        engine=engine,
        joint=codebook.mode == "joint",
    )
