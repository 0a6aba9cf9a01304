"""`textcoder batches`: list a store's Batch API batches (refreshed from the server), or
cancel those in flight."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._exceptions import BackendError, UsageError


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "batches", help="list the Batch API batches of a store, or cancel those in flight"
    )
    p.add_argument(
        "--store",
        action="append",
        help="a run's store (default: every *.textcoder.sqlite in the current folder)",
    )
    p.add_argument("--cancel", action="store_true", help="cancel every batch still in flight")
    p.add_argument("--base-url", help="the server (default: the one each batch was sent to)")
    p.add_argument("--api-key", help="the server's key (default: $OPENAI_API_KEY)")
    p.add_argument(
        "--offline", action="store_true", help="show what the store last saw; ask no server"
    )
    p.add_argument("--json", action="store_true", help="print the batches as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..batch_store import BatchStore

    stores = (
        [Path(s) for s in args.store] if args.store else sorted(Path().glob("*.textcoder.sqlite"))
    )
    if not stores:
        raise UsageError("no *.textcoder.sqlite here; name one with --store PATH")
    rows: list[dict[str, Any]] = []
    for path in stores:
        store = BatchStore(path)
        try:
            for rec in store.batches():
                if not rec.done and not args.offline:
                    client = _client(args, rec.base_url)
                    try:
                        if args.cancel:
                            store.update_batch(client.batches.cancel(rec.batch_id))
                        store.update_batch(client.batches.retrieve(rec.batch_id))
                    except Exception as exc:  # the listing goes on without this server
                        print(
                            f"textcoder: {rec.batch_id}: cannot ask {rec.base_url}: {exc}",
                            file=sys.stderr,
                        )
                now = store.batch(rec.batch_id) or rec
                rows.append({"store": str(path), **now.as_dict()})
        finally:
            store.close()
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        _table(rows)
    return 0


def _client(args: argparse.Namespace, base_url: str) -> Any:
    """A synchronous `openai` client for the batch's server (or --base-url)."""
    import openai

    url = args.base_url or base_url or None
    key = args.api_key or os.environ.get("OPENAI_API_KEY")
    if key is None:
        if url is None or "api.openai.com" in url:
            raise BackendError("asking OpenAI about batches needs OPENAI_API_KEY (or --offline)")
        key = "sk-no-key-required"
    return openai.OpenAI(base_url=url, api_key=key, max_retries=3)


def _when(ts: int | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M")


def _table(rows: list[dict[str, Any]]) -> None:
    """id, status, completed/failed/total, created, expires, whether collected."""
    if not rows:
        print("no batches")
        return
    head = ("batch", "status", "completed", "failed", "total", "created", "expires", "collected")
    lines = [head]
    for r in rows:
        c = r["request_counts"]
        lines.append(
            (
                r["batch_id"],
                r["status"],
                str(c["completed"]),
                str(c["failed"]),
                str(c["total"]),
                _when(r["created_at"]),
                _when(r["expires_at"]),
                "yes" if r["collected"] else "no",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
