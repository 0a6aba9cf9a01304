"""The codebook: coding instructions, the variables to code with their categories, and examples.

Loaded from YAML; every loading error names the file, the line and the field.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ._exceptions import CodebookError
from .output import column_clashes, label_problem

DEFAULT_TEMPLATE = "Text: '''{text}'''"
DEFAULT_VARIABLE = "label"


class Category(BaseModel):
    """One category of a coding scheme: its label, what it means, and other names for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    description: str | None = None
    aliases: tuple[str, ...] = ()

    @field_validator("label")
    @classmethod
    def _label_not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("a category label must not be empty")
        problem = label_problem(v)
        if problem is not None:
            raise ValueError(problem)
        return v.strip()


class Variable(BaseModel):
    """One thing to code about each text, with its own closed set of categories."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    categories: tuple[Category, ...]
    instructions: str | None = None
    scale: Literal["nominal", "ordinal"] = "nominal"
    multi: bool = False

    @field_validator("categories", mode="before")
    @classmethod
    def _categories(cls, v: Any) -> Any:
        if not isinstance(v, list):
            raise ValueError("categories must be a list")
        return [{"label": str(c)} if isinstance(c, str | int | float) else c for c in v]

    @model_validator(mode="after")
    def _check(self) -> Variable:
        if len(self.categories) < 2:
            raise ValueError(f"variable {self.name!r} needs at least two categories")
        seen: dict[str, str] = {}
        for cat in self.categories:
            for name in (cat.label, *cat.aliases):
                key = name.strip().lower()
                if key in seen:
                    raise ValueError(
                        f"variable {self.name!r}: {name!r} names both {seen[key]!r} and {cat.label!r}"
                        if seen[key] != cat.label
                        else f"variable {self.name!r}: {name!r} is listed twice"
                    )
                seen[key] = cat.label
        return self

    @property
    def labels(self) -> list[str]:
        """The category labels in codebook order."""
        return [c.label for c in self.categories]

    def find(self, name: str) -> Category | None:
        """The category whose label or alias is `name`, ignoring case and surrounding space."""
        key = name.strip().lower()
        for cat in self.categories:
            if key in (n.strip().lower() for n in (cat.label, *cat.aliases)):
                return cat
        return None


class Example(BaseModel):
    """A worked example: a text and the codes a human gave it, shown to the model as a turn."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str
    codes: dict[str, str]


class ExamplesFrom(BaseModel):
    """`examples_from:`: worked examples drawn from a labelled file for each text (see
    textcoder/examples_select.py), instead of, or after, the fixed `examples:`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    k: int = Field(default=4, ge=1, le=64)
    select: Literal["similar", "random", "fixed"] = "similar"
    balanced: bool = False
    seed: int = 0
    text_column: str = "text"
    id_column: str | None = "id"
    embed_model: str | None = None

    def path(self, codebook_path: str | None) -> Path:
        """The labelled file, relative to the codebook's folder (or the working directory)."""
        p = Path(self.file).expanduser()
        if p.is_absolute() or not codebook_path or codebook_path.startswith("<"):
            return p
        return Path(codebook_path).parent / p


class Codebook(BaseModel):
    """Coding instructions, variables and examples: everything a coding run needs to know."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = None
    instructions: str
    variables: tuple[Variable, ...] = Field(min_length=1)
    examples: tuple[Example, ...] = ()
    #: examples chosen for each text from a labelled file (textcoder/examples_select.py)
    examples_from: ExamplesFrom | None = None
    #: other wordings of `instructions`, for `textcoder robustness --variants instructions`
    paraphrases: tuple[str, ...] = ()
    template: str = DEFAULT_TEMPLATE
    mode: Literal["per-variable", "joint"] = "per-variable"
    path: str | None = Field(default=None, exclude=True)
    sha256: str | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """Accept top-level `categories:` (and `variable:`) as a one-variable codebook."""
        if isinstance(data, Mapping) and "categories" in data:
            data = dict(data)
            if "variables" in data:
                raise ValueError("give either `variables:` or top-level `categories:`, not both")
            name = data.pop("variable", DEFAULT_VARIABLE)
            var = {"name": name, "categories": data.pop("categories")}
            for key in ("scale", "multi"):
                if key in data:
                    var[key] = data.pop(key)
            data["variables"] = [var]
        return data

    @field_validator("template")
    @classmethod
    def _template(cls, v: str) -> str:
        if "{text}" not in v:
            raise ValueError("the template must contain {text}, where the text goes")
        try:
            v.format(text="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"the template may contain only {{text}} (write other braces as {{{{ }}}}): {exc}"
            ) from None
        return v

    @model_validator(mode="after")
    def _check(self) -> Codebook:
        names = [v.name for v in self.variables]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise _at("variables", f"variable names must be unique; repeated: {sorted(dupes)}")
        clashes = column_clashes(self.variables)
        if clashes:
            raise _at("variables", f"{clashes[0]}; rename one of them")
        for i, ex in enumerate(self.examples):
            for var_name, code in ex.codes.items():
                var = self.variable(var_name) if var_name in names else None
                if var is None:
                    raise _at(f"examples.{i}.codes.{var_name}", "is not a variable of the codebook")
                parts = [p.strip() for p in code.split(";") if p.strip()] if var.multi else [code]
                for part in parts:
                    if var.find(part) is None:
                        raise _at(
                            f"examples.{i}.codes.{var_name}",
                            f"{part!r} is not one of the categories {var.labels}",
                        )
        return self

    def variable(self, name: str) -> Variable:
        """The variable called `name`."""
        for v in self.variables:
            if v.name == name:
                return v
        raise KeyError(name)

    def render(self, text: str) -> str:
        """The user message for one text, as the template puts it."""
        return self.template.replace("{text}", text)

    @classmethod
    def from_yaml(cls, path: str | Path) -> Codebook:
        """Load a codebook from a YAML file; errors name the file, the line and the field."""
        p = Path(path)
        try:
            raw = p.read_bytes()
        except OSError as exc:
            raise CodebookError(f"{p}: cannot read the codebook: {exc.strerror or exc}") from None
        return cls.from_yaml_text(raw.decode("utf-8", errors="replace"), source=str(p))

    @classmethod
    def from_yaml_text(cls, text: str, source: str = "<codebook>") -> Codebook:
        """Load a codebook from YAML text; `source` names it in errors."""
        try:
            node = yaml.compose(text, Loader=_Loader)
            data = yaml.load(text, Loader=_Loader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise CodebookError(f"{source}{where}: not valid YAML: {problem}") from None
        if not isinstance(data, dict):
            raise CodebookError(f"{source}: a codebook is a YAML mapping with `instructions:` etc.")
        try:
            book = cls.model_validate(_stringify_codes(data))
        except ValidationError as exc:
            raise CodebookError(_describe(exc, node, source, data)) from None
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return book.model_copy(update={"path": source, "sha256": digest})

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Codebook:
        """Build a codebook from a mapping shaped like the YAML file."""
        try:
            book = cls.model_validate(_stringify_codes(dict(data)))
        except ValidationError as exc:
            raise CodebookError(_describe(exc, None, "<codebook>", data)) from None
        digest = hashlib.sha256(repr(sorted(data.items(), key=str)).encode()).hexdigest()
        return book.model_copy(update={"sha256": digest})


class _Loader(yaml.SafeLoader):
    """YAML as researchers write it: `yes`/`no`/`on`/`off` stay strings (labels), not booleans."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _first in "tTfF":
    _Loader.yaml_implicit_resolvers.setdefault(_first, []).insert(
        0, ("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"))
    )


def _at(path: str, msg: str) -> ValueError:
    """A validation error that carries the field path it is about (pydantic's is empty here)."""
    return ValueError(f"@{path}@{msg}")


def _stringify_codes(data: dict[str, Any]) -> dict[str, Any]:
    """YAML reads `codes: {rating: 3}` as an int; codes are labels, so make them strings."""
    examples = data.get("examples")
    if isinstance(examples, list):
        data = dict(data)
        data["examples"] = [
            {**ex, "codes": {k: str(v) for k, v in ex["codes"].items()}}
            if isinstance(ex, dict) and isinstance(ex.get("codes"), dict)
            else ex
            for ex in examples
        ]
    return data


def _describe(exc: ValidationError, node: yaml.Node | None, source: str, data: Any) -> str:
    """One line for the first validation error: file:line: field: problem."""
    err = exc.errors()[0]
    msg = str(err["msg"]).removeprefix("Value error, ")
    loc: list[Any] = [p for p in err["loc"] if not (isinstance(p, str) and "[" in p)]
    if msg.startswith("@"):
        path, msg = msg[1:].split("@", 1)
        loc = [int(p) if p.isdigit() else p for p in path.split(".")]
    loc = _yaml_path(loc, data)
    field = _dotted(loc) or "(top level)"
    line = _line_of(node, loc) if node is not None else None
    where = f"{source}:{line}" if line else source
    if err["type"] == "missing":
        msg = "is required"
    elif err["type"] == "extra_forbidden":
        msg = "is not a codebook field"
    return f"{where}: {field}: {msg}"


def _yaml_path(loc: list[Any], data: Any) -> list[Any]:
    """Map a pydantic error location back onto the YAML as written (shorthand, string categories)."""
    if loc[:1] == ["variables"] and isinstance(data, dict) and "categories" in data:
        rest = loc[2:]
        if rest[:1] in (["categories"], ["scale"], ["multi"]):
            return rest
        return ["variable"] if rest[:1] == ["name"] else ["categories"]
    # `categories: [positive]` becomes {label: positive}; point at the list item, not `.label`
    out: list[Any] = []
    cur = data
    for part in loc:
        if (isinstance(cur, dict) and part in cur) or (
            isinstance(cur, list) and isinstance(part, int) and part < len(cur)
        ):
            cur = cur[part]
        else:
            if part == "label" and isinstance(cur, str):
                break
            out.append(part)
            cur = None
            continue
        out.append(part)
    return out


def _dotted(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(node: yaml.Node, loc: list[Any]) -> int | None:
    """The 1-based line of the deepest node along `loc` that exists in the YAML."""
    line = node.start_mark.line + 1
    cur: yaml.Node | None = node
    for part in loc:
        nxt: yaml.Node | None = None
        if isinstance(cur, yaml.MappingNode):
            for k, v in cur.value:
                if k.value == part:
                    line = k.start_mark.line + 1
                    nxt = v
                    break
        elif isinstance(cur, yaml.SequenceNode) and isinstance(part, int) and part < len(cur.value):
            nxt = cur.value[part]
            line = nxt.start_mark.line + 1
        if nxt is None:
            break
        cur = nxt
    return line
