"""`textcoder code`: code a table with a codebook and write the coded table and its manifest."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._exceptions import DataError, UsageError
from ..calibration import METHODS as CALIBRATIONS
from ..output import DISPLAY_DIGITS
from ..scoring import METHODS
from . import batch_code, evaluate
from .options import add_codebook_option, add_model_options, add_table_options
from .summary import failed_line

if TYPE_CHECKING:  # the library is imported when the command runs, not for --help
    from ..codebook import Codebook
    from ..coder import Coder


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("code", help="code every text in a table")
    p.add_argument("data", help="the table to code: CSV, TSV, JSONL, Parquet or Excel")
    add_codebook_option(p)
    p.add_argument("-o", "--output", help="the coded table (default: DATA's stem + .coded)")
    add_table_options(p)
    add_model_options(p)
    p.add_argument(
        "--scoring",
        choices=METHODS,
        help="how probabilities are read (see the docs: Scoring methods)",
    )
    p.add_argument("--concurrency", type=int, help="requests in flight (default: 1 local, 16 HTTP)")
    p.add_argument("--max-tokens", type=int, default=10, help="answer length limit (default 10)")
    p.add_argument(
        "--temperature",
        type=float,
        help="sampling temperature (default 0; 1.0 with --scoring sample)",
    )
    p.add_argument("--n", type=int, default=5, help="answers per text for --scoring sample (5)")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="multi-label variables: a category is chosen from this probability on (0.5)",
    )
    p.add_argument(
        "--calibrate",
        choices=CALIBRATIONS,
        help="correct the model's bias toward some labels (default: content-free with "
        "--scoring exact, the local engine's default; else none; see the docs: Calibration)",
    )
    p.add_argument(
        "--gold",
        action="append",
        metavar="COLUMN",
        help="human codes: evaluated after coding, and fitted on by --calibrate fit "
        "(VAR=COLUMN with several variables)",
    )
    p.add_argument(
        "--store",
        help="the SQLite file keeping every answer (default: OUTPUT.textcoder.sqlite)",
    )
    p.add_argument("--fresh", action="store_true", help="send every row again, ignoring the store")
    p.add_argument(
        "--max-retries", type=int, default=6, help="retries of a failed request (default 6)"
    )
    p.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for an answer (default 60)"
    )
    p.add_argument("--rpm", type=float, help="at most this many requests a minute")
    p.add_argument("--tpm", type=float, help="at most this many tokens a minute (estimated)")
    p.add_argument(
        "--truncate",
        action="store_true",
        help="cut each text longer than the model's context to fit (local engine; counted "
        "in the manifest as truncated_texts)",
    )
    p.add_argument(
        "--allow-mixed-models",
        action="store_true",
        help="with several --base-url: allow servers that serve different models",
    )
    p.add_argument(
        "--digits",
        type=int,
        default=DISPLAY_DIGITS,
        help=f"digits kept in the probability, confidence and entropy columns written "
        f"(default {DISPLAY_DIGITS}; the store keeps answers whole)",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar or summary")
    batch_code.add_options(p)  # batch hook (issue 16)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..codebook import Codebook
    from ..runlock import RunLock
    from ..store import default_store_path
    from ..tables import check_output, default_output

    book = Codebook.from_yaml(args.codebook)
    out = Path(args.output) if args.output else default_output(args.data)
    check_output(args.data, out)
    store = Path(args.store) if args.store else default_store_path(out)
    for path, what in ((out, "output"), (store, "store")):
        if not path.parent.is_dir():
            raise UsageError(f"{path}: the {what}'s folder {path.parent} does not exist")
    batch_code.check(args, store)  # batch hook (issue 16)
    # before anything is sent: a second live run on this store or this output stops here
    with RunLock(store), RunLock(out, "output"):
        return _run(args, book, out, store)


def _run(args: argparse.Namespace, book: Codebook, out: Path, store: Path) -> int:
    from ..calibration import gold_codes, gold_columns
    from ..limits import check_settings
    from ..run.schedule import RunInterrupted
    from ..table_rows import scan_rows
    from ..tables import CHUNK_ROWS, read_table
    from .manifest import write_manifest

    check_settings(digits=args.digits)
    if args.calibrate == "fit" and not args.gold:
        raise UsageError("--calibrate fit needs --gold COLUMN (the human codes to fit on)")
    golds = gold_columns(book, args.gold)
    df = read_table(args.data) if golds else None  # calibrating needs the whole table anyway
    for var, col in golds.items():
        assert df is not None
        try:  # a bad column or code fails before anything is coded
            gold_codes(df, col, book.variable(var))
        except DataError as exc:
            raise DataError(f"{args.data}: {exc}") from None
    del df

    def warn(message: str) -> None:
        if not args.quiet:
            print(f"textcoder: {message}", file=sys.stderr)

    # the table is checked before anything is sent, the probe included (batch runs send no probe)
    rows = (
        None
        if args.batch
        else scan_rows(args.data, args.text_column, args.id_column, CHUNK_ROWS, warn)
    )
    coder = _coder(args, book)

    for note in coder.notes:
        warn(note)
    if args.batch:  # batch hook (issue 16): plan, submit or re-attach, wait, collect, write
        return batch_code.run(args, coder, out, store, warn)
    try:
        coder.code_file(
            args.data,
            out,
            text_column=args.text_column,
            id_column=args.id_column,
            store=store,
            progress="off" if args.quiet else "auto",
            handle_signals=True,
            gold=args.gold,
            warn=warn,
            digits=args.digits,
            rows=rows,
        )
    except RunInterrupted as exc:
        print(
            f"textcoder: stopped by {exc.signame}; {exc.stored} answers are kept in {store}. "
            "Run the same command again to resume: only what is missing will be sent.",
            file=sys.stderr,
        )
        return 130
    finally:
        coder.close()
    manifest, manifest_path = write_manifest(coder, args, out, store)
    stats = coder.last_stats
    failed = stats.failed if stats else 0
    permanent = stats.failed_permanent if stats else 0
    if not args.quiet:
        _summary(stats, manifest, out, manifest_path)
    if golds:  # evaluate against the human codes right after coding
        evaluate.after_code(out, golds, book, quiet=args.quiet)
    if failed:
        print(failed_line(failed, permanent, store), file=sys.stderr)
    return 1 if failed else 0


def _summary(stats: Any, manifest: dict[str, Any], out: Path, manifest_path: Path) -> None:
    """The closing lines: rows, the whole run's time and every request sent (probes and
    calibration's content-free inputs included), then each server's share."""
    if stats is not None:
        reused = f", {stats.reused} answers from the store" if stats.reused else ""
        print(
            f"textcoder: coded {stats.rows} rows in {stats.seconds:.1f}s "
            f"({stats.requests} requests{reused}) -> {out} (+ {manifest_path.name})",
            file=sys.stderr,
        )
    for server in manifest.get("servers", []):
        latency = server["mean_latency_s"]
        print(
            f"textcoder:   {server['base_url']}: {server['requests']} requests, "
            f"{server['failures']} failed"
            + (f" ({server['ejections']} ejections)" if server.get("ejections") else "")
            + (f", {latency * 1000:.0f} ms mean latency" if latency is not None else ""),
            file=sys.stderr,
        )


def _coder(args: argparse.Namespace, book: Codebook) -> Coder:
    """The coder the command's options describe."""
    from ..coder import Coder

    return Coder(
        book,
        model=args.model,
        base_url=args.base_url,
        scoring=args.scoring,
        api_key=args.api_key,
        backend=args.backend,
        concurrency=args.concurrency,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        n=args.n,
        threshold=args.threshold,
        calibrate=args.calibrate,
        timeout=args.timeout,
        max_retries=args.max_retries,
        rpm=args.rpm,
        tpm=args.tpm,
        fresh=args.fresh,
        truncate=args.truncate,
        allow_mixed_models=args.allow_mixed_models,
        batch=args.batch,
    )
