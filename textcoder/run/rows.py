"""Coding one row: its plan's units answered from the store or sent, each result stored at once."""

from __future__ import annotations

from collections.abc import Callable

from .._exceptions import RequestError, TextcoderError
from ..codebook import Codebook, Variable
from ..output import INVALID
from ..plan import Planner, Unit
from ..results import CodeResult
from ..retry import is_retryable
from ..scoring.result import VariableResult
from ..store import Store
from .online import OnlineExecutor
from .stats import RunStats, Usage

EMPTY_TEXT = "empty text: nothing to code"
NOT_CODED = "not coded: the run stopped before this row's answer arrived"


def failed_result(
    variable: Variable, error: str, label: str = "", permanent: bool = False
) -> VariableResult:
    """A variable that could not be coded: no probabilities, the error kept (`permanent`: a
    rerun would fail the same way, e.g. a text longer than the model's context)."""
    nan = float("nan")
    extra: dict[str, object] = {"permanent": True} if permanent else {}
    return VariableResult(
        label=label, probs=dict.fromkeys(variable.labels, nan), other=nan, error=error, extra=extra
    )


def empty_result(variable: Variable) -> VariableResult:
    """An empty text is coded `INVALID` with all mass outside the scheme; nothing is sent."""
    return VariableResult(
        label=INVALID, probs=dict.fromkeys(variable.labels, 0.0), other=1.0, error=EMPTY_TEXT
    )


def empty_row(codebook: Codebook) -> CodeResult:
    """The results of an empty text."""
    return CodeResult({v.name: empty_result(v) for v in codebook.variables})


class RowCoder:
    """Codes rows: stored answers reused, the rest sent by the executor and stored."""

    def __init__(
        self,
        planner: Planner,
        executor: OnlineExecutor,
        store: Store,
        stats: RunStats,
        *,
        fresh: bool = False,
        note: Callable[[str], None] = lambda message: None,
        fit: Callable[[str], str] | None = None,
    ) -> None:
        self.planner = planner
        self.executor = executor
        self.store = store
        self.stats = stats
        self.fresh = fresh
        self.note = note
        #: cuts a text to fit the model's context (`--truncate`), or None
        self.fit = fit
        #: whether the store may hold answers to reuse; a run on an empty store skips the
        #: lookups, since a row's units are looked up before they are ever stored
        self.lookup = True

    def _fitted(self, text: str) -> str:
        if self.fit is None:
            return text
        cut = self.fit(text)
        if cut != text:
            self.stats.truncated += 1
        return cut

    async def code_text(self, text: str) -> CodeResult:
        """Every variable of one text, without a store row (`Coder.code`)."""
        if not text.strip():
            return empty_row(self.planner.codebook)
        out: dict[str, VariableResult] = {}
        for unit in self.planner.plan(text):
            out.update((await self._answer(unit, text))[0])
        return CodeResult(out)

    async def code_row(self, row_id: str, text: str) -> CodeResult:
        """Each unit of one row that the store lacks is sent and its results stored at once;
        stored ones are reused. A failed variable's error is stored, so a rerun retries it."""
        if not text.strip():
            return empty_row(self.planner.codebook)
        text = self._fitted(text)
        out: dict[str, VariableResult] = {}
        for unit in self.planner.plan(text, row_id):  # row_id: examples_from hook
            stored = self._stored(unit, row_id) if self.lookup and not self.fresh else None
            if stored is not None:
                self.stats.reused += len(stored)
                out.update(stored)
                continue
            results, usage = await self._answer(unit, text)
            # synchronous from here: no await between the answer and its commit, so a
            # cancelled or killed run never leaves half an answer
            self._put(unit, row_id, results, usage)
            out.update(results)
        return CodeResult(out)

    def _stored(self, unit: Unit, row_id: str) -> dict[str, VariableResult] | None:
        found: dict[str, VariableResult] = {}
        for var, key in zip(unit.variables, unit.keys, strict=True):
            hit = self.store.get(key, row_id)
            if hit is None or not hit.ok:
                return None
            found[var.name] = hit.result
        return found

    def _put(
        self, unit: Unit, row_id: str, results: dict[str, VariableResult], usage: Usage
    ) -> None:
        for i, (var, key) in enumerate(zip(unit.variables, unit.keys, strict=True)):
            result = results[var.name]
            self.store.put(
                key,
                row_id,
                var.name,
                result,
                ok=result.error is None,
                model=usage.model,
                system_fingerprint=usage.system_fingerprint,
                # a joint answer's tokens are counted once, with its first variable
                prompt_tokens=usage.prompt_tokens if i == 0 else 0,
                completion_tokens=usage.completion_tokens if i == 0 else 0,
            )

    async def _answer(self, unit: Unit, text: str) -> tuple[dict[str, VariableResult], Usage]:
        """A unit's results; a failure becomes each variable's error, never a raise. A server
        that refuses a joint (json_schema) request gets each variable's own requests."""
        try:
            answers, usage = await self.executor.answer(unit.requests)
        except RequestError as exc:
            if not unit.joint:
                return self._failed(unit, exc), Usage()
            self.planner.joint = False
            self.note(
                f"the server refused a json_schema request ({exc}); coding each variable "
                "in its own request instead"
            )
            out: dict[str, VariableResult] = {}
            total = Usage()
            for var in unit.variables:
                res, usage = await self._answer(self.planner.variable_unit(text, var), text)
                out.update(res)
                total.add(usage)
            return out, total
        except TextcoderError as exc:
            return self._failed(unit, exc), Usage()
        return unit.read(answers), usage

    @staticmethod
    def _failed(unit: Unit, exc: TextcoderError) -> dict[str, VariableResult]:
        permanent = not is_retryable(exc)
        return {v.name: failed_result(v, str(exc), permanent=permanent) for v in unit.variables}
