"""`textcoder robustness`: code a sample again under prompt variants; how much do codes move?"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .options import add_codebook_option, add_model_options

KINDS = ("order", "descriptions", "examples", "instructions")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "robustness", help="re-code a sample under prompt variants and report how codes move"
    )
    p.add_argument("data", help="a coded table (its manifest and store are reused) or an input")
    add_codebook_option(p)
    p.add_argument("-n", type=int, default=200, help="texts in the sample (default 200)")
    p.add_argument(
        "--variants",
        default=",".join(KINDS),
        help=f"comma-separated kinds of variant (default {','.join(KINDS)})",
    )
    p.add_argument("--orders", type=int, default=3, help="random category orders (default 3)")
    p.add_argument("--draws", type=int, default=2, help="other draws of examples (default 2)")
    p.add_argument("--seed", type=int, default=0, help="the sample's and variants' seed (0)")
    p.add_argument("--gold", metavar="COLUMN", help="human codes: macro-F1 per variant")
    p.add_argument("--text-column", help="the texts' column (default: the manifest's, or text)")
    p.add_argument("--id-column", help="the rows' ids (default: the manifest's, or row numbers)")
    add_model_options(p)
    p.add_argument("--scoring", help="how probabilities are read (default: the manifest's)")
    p.add_argument("--concurrency", type=int, help="requests in flight")
    p.add_argument("--max-tokens", type=int, help="answer length limit (default: the manifest's)")
    p.add_argument("--temperature", type=float)
    p.add_argument("--store", help="the answers' SQLite file (default: the coded run's store)")
    p.add_argument("-o", "--output", help="the variant columns (default DATA.robustness.csv)")
    p.add_argument("--json", metavar="PATH", help="write the figures as JSON")
    p.add_argument("--report", metavar="PATH", help="write an HTML report with a shares plot")
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(func=run)


def _defaults(args: argparse.Namespace, manifest: dict[str, Any]) -> dict[str, Any]:
    """Coder options: the command line's, else the coded run's (so its answers are reused)."""
    params = manifest.get("parameters") or {}
    model = args.model
    base_url = args.base_url
    if model is None and manifest.get("backend") == "local":
        model = _local_model(manifest)
    elif model is None and manifest.get("backend") == "openai":
        model = manifest.get("model")
        base_url = base_url or manifest.get("base_url")
    out: dict[str, Any] = {
        "model": model,
        "base_url": base_url,
        "api_key": args.api_key,
        "backend": args.backend,
        "scoring": args.scoring or manifest.get("scoring"),
        "concurrency": args.concurrency,
        "calibrate": "none",  # the model's own labels are compared
    }
    for key, given in (("max_tokens", args.max_tokens), ("temperature", args.temperature)):
        value = given if given is not None else params.get(key)
        if value is not None:
            out[key] = value
    for key in ("seed", "n", "threshold"):
        if key in params:
            out[key] = params[key]
    return out


def _local_model(manifest: dict[str, Any]) -> str | None:
    """The coded run's local model by the name it ran under (the name is in the store key)."""
    from .._exceptions import ModelError
    from ..models import resolve_model

    name, path = manifest.get("model"), manifest.get("model_path")
    try:
        if name and (path is None or str(resolve_model(name).path) == str(path)):
            return str(name)
    except ModelError:
        pass
    return str(path) if path else None


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ..codebook import Codebook
    from ..coder import Coder
    from ..evaluate.load import read_manifest
    from ..robustness import sample_table
    from ..robustness.check import store_of
    from ..robustness.report import write_report
    from ..store import default_store_path
    from ..tables import read_table, write_table

    book = Codebook.from_yaml(args.codebook)
    manifest = read_manifest(args.data)
    given_input = manifest.get("input") or {}
    text_column = args.text_column or given_input.get("text_column") or "text"
    id_column = args.id_column or given_input.get("id_column")
    out = Path(args.output) if args.output else Path(args.data).with_suffix(".robustness.csv")
    store = Path(args.store) if args.store else store_of(manifest) or default_store_path(out)
    options = _defaults(args, manifest)

    def make_coder(codebook: Codebook, base: Coder | None) -> Coder:
        if base is None:
            return Coder(codebook, store=store, **options)
        shared = {k: v for k, v in options.items() if k not in ("model", "base_url", "api_key")}
        return Coder(
            codebook, **{**shared, "backend": base.backend, "scoring": base.scoring}, store=store
        )

    def say(message: str) -> None:
        if not args.quiet:
            print(f"textcoder: {message}", file=sys.stderr)

    sample = sample_table(read_table(args.data), args.n, args.seed, text_column, id_column)
    check = _check(args, book, sample, make_coder, say, store)
    if check is None:
        return 130
    write_table(check.table, out)
    check.figures["output"] = str(out)
    check.figures["store"] = str(store)
    if args.json:
        Path(args.json).write_text(json.dumps(check.figures, indent=2, ensure_ascii=False) + "\n")
    if args.report:
        write_report(check.figures, args.report)
    console = Console(width=max(Console().width, 150))
    for part in _tables(check.figures):
        console.print(part)
    say(
        f"{check.figures['requests_sent']} requests sent, {check.figures['answers_reused']} "
        f"answers from the store ({store}); variant columns -> {out}"
    )
    return 0


def _check(
    args: argparse.Namespace, book: Any, sample: Any, make_coder: Any, say: Any, store: Path
) -> Any:
    """The check the options describe; None after Ctrl-C (answers kept, a resume hint said)."""
    from ..robustness import run_check
    from ..run.schedule import RunInterrupted

    try:
        return run_check(
            book,
            sample,
            make_coder,
            [k.strip() for k in args.variants.split(",") if k.strip()],
            orders=args.orders,
            draws=args.draws,
            seed=args.seed,
            gold=args.gold,
            progress=not args.quiet,
            say=say,
            handle_signals=True,
        )
    except (RunInterrupted, KeyboardInterrupt) as exc:
        how = exc.signame if isinstance(exc, RunInterrupted) else "SIGINT"
        print(
            f"textcoder: stopped by {how}; every answer received is kept in {store}. "
            "Run the same command again to resume: only what is missing will be sent.",
            file=sys.stderr,
        )
        return None


def _tables(figures: dict[str, Any]) -> list[Any]:
    """One rich table per variable, then alpha and notes."""
    from rich.table import Table

    out: list[Any] = []
    for fig in figures["variables"]:
        gold = any("macro_f1" in v for v in fig["variants"])
        t = Table(title=f"{fig['variable']}: {fig['n_texts']} texts, each variant against base")
        for col in ("variant", "agreement", "kappa", "flips", *(["macro-F1"] if gold else [])):
            t.add_column(col, justify="left" if col == "variant" else "right")
        for c in fig["categories"]:
            t.add_column(f"{c} (shift)", justify="right")
        for v in fig["variants"]:
            cells = [
                v["variant"],
                _pct(v["agreement"]),
                _num(v["cohen_kappa"]),
                _pct(v["flip_share"]),
            ]
            if gold:
                cells.append(_num(v.get("macro_f1")))
            cells += [
                f"{100 * v['shares'][c]:.1f}% ({100 * v['shifts'][c]:+.1f})"
                for c in fig["categories"]
            ]
            t.add_row(*cells)
        out.append(t)
        out.append(
            f"Krippendorff's alpha across variants ({fig['scale']}): {_num(fig['krippendorff_alpha'])}"
        )
    out += [f"note: {n}" for n in figures["notes"]]
    return out


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"
