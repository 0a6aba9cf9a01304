"""`textcoder code --batch`: the options and the run through OpenAI's Batch API."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .._exceptions import UsageError


def add_options(p: argparse.ArgumentParser) -> None:
    """`--batch`, `--no-batch`, `--no-wait` on `textcoder code`."""
    g = p.add_argument_group("Batch API (see the docs: OpenAI and the Batch API)")
    g.add_argument(
        "--batch",
        action="store_true",
        help="send the requests through OpenAI's Batch API (half price, within 24 h); "
        "run the same command again to re-attach or collect",
    )
    g.add_argument(
        "--no-batch",
        action="store_true",
        help="code online even though the store has batches not yet collected",
    )
    g.add_argument(
        "--no-wait",
        action="store_true",
        help="with --batch: submit the batches and exit; the same command later collects",
    )


def check(args: argparse.Namespace, store: Path) -> None:
    """Refuse contradictory flags, and an online run while batches hold requests in flight
    (it would pay for them twice) unless `--no-batch` says so."""
    if args.batch and args.no_batch:
        raise UsageError("--batch and --no-batch contradict each other")
    if args.no_wait and not args.batch:
        raise UsageError("--no-wait goes with --batch")
    if args.batch or args.no_batch or not store.is_file():
        return
    from ..batch_store import BatchStore

    batches = BatchStore(store)
    try:
        for batch_id in batches.settle_answered():
            print(
                f"textcoder: batch {batch_id}: the store holds every row it was sent for; "
                "nothing waits on it now",
                file=sys.stderr,
            )
        waiting = batches.batches(uncollected=True)
    finally:
        batches.close()
    if waiting:
        ids = [b.batch_id for b in waiting]
        listed = f"{', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''}"
        cancelled = all(b.status in ("cancelling", "cancelled") for b in waiting)
        hint = (
            "they are cancelled: add --batch to read back what they answered before the cancel"
            if cancelled
            else "add --batch to collect them, or `textcoder batches --cancel` to cancel them"
        )
        raise UsageError(
            f"{store} has {len(ids)} batches not yet collected ({listed}): {hint}; or "
            "--no-batch to code online anyway (paying again for what they hold)"
        )


def run(args: argparse.Namespace, coder: Any, out: Path, store: Path, warn: Any) -> int:
    """Submit (or re-attach), wait, collect and write the output as `textcoder code` does."""
    from ..batch_coder import code_file_batch
    from . import evaluate
    from .manifest import write_manifest

    try:
        outcome = code_file_batch(
            coder,
            args.data,
            out,
            text_column=args.text_column,
            id_column=args.id_column,
            store=store,
            progress="off" if args.quiet else "auto",
            wait=not args.no_wait,
            gold=args.gold,
            warn=warn,
            digits=args.digits,
        )
    except KeyboardInterrupt:
        print(
            f"textcoder: stopped waiting; the batches go on at the server and are recorded in "
            f"{store}. Run the same command again to collect (`textcoder batches --store "
            f"{store}` shows them).",
            file=sys.stderr,
        )
        return 130
    finally:
        coder.close()
    report = outcome.report
    if outcome.stats is None:
        ids = report.created + sorted(report.attached)
        print(
            f"textcoder: submitted {report.sent:,} requests in {len(report.created)} new "
            f"batches ({len(report.attached)} re-attached): {', '.join(ids) or 'none'}. "
            "Run the same command again to wait and collect; `textcoder batches --store "
            f"{store}` shows their progress.",
            file=sys.stderr,
        )
        return 0
    _, manifest_path = write_manifest(coder, args, out, store, batch=outcome.manifest())
    stats = outcome.stats
    if not args.quiet:
        print(
            f"textcoder: coded {stats.rows} rows ({report.sent:,} requests sent in "
            f"{len(report.created)} batches, {len(report.attached)} re-attached, "
            f"{stats.reused} answers from the store) -> {out} (+ {manifest_path.name})",
            file=sys.stderr,
        )
    if args.gold:
        from ..calibration import gold_columns

        evaluate.after_code(
            out, gold_columns(coder.codebook, args.gold), coder.codebook, quiet=args.quiet
        )
    if stats.failed:
        from .summary import failed_line

        again = "run the same command again to send only those in a new batch (or --no-batch)"
        print(failed_line(stats.failed, stats.failed_permanent, store, again), file=sys.stderr)
    return 1 if stats.failed else 0
