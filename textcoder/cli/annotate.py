"""`textcoder annotate`: serve a sample to human coders in the browser, or export their codes."""

from __future__ import annotations

import argparse
import socket
import sys
from pathlib import Path
from typing import Any

from .._exceptions import DataError, UsageError
from .options import add_codebook_option, add_table_options

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "annotate", help="human coding in the browser: blind coders, agreement, export"
    )
    p.add_argument("sample", help="the table to code (a coded table works; its codes stay hidden)")
    add_codebook_option(p)
    p.add_argument("--coders", help="the coders' names, e.g. alice,bob (each gets a URL)")
    add_table_options(p)
    p.add_argument(
        "--store", help="the SQLite file keeping the codes (default: SAMPLE.annotate.sqlite)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=port_number, default=8100, help="port (default 8100)")
    p.add_argument(
        "--overlap",
        type=float,
        default=1.0,
        help="share of texts every coder codes; the rest is split among them (default 1: all)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the assignment and orders (0)")
    p.add_argument(
        "--resamples",
        type=int,
        default=200,
        help="bootstrap resamples behind the admin page's intervals (200; evaluate uses 1000)",
    )
    p.add_argument(
        "--export", metavar="PATH", help="write the codes to this table and exit (no server)"
    )
    p.set_defaults(func=run)


def port_number(text: str) -> int:
    """A TCP port, 1-65535 (argparse's type for --port)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is between 1 and 65535, not {port}")
    return port


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, so a port in use is found before any link is shown."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise UsageError(f"--host {host}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def run(args: argparse.Namespace) -> int:
    from ..annotate import open_annotation
    from ..annotate.sample import parse_coders
    from ..codebook import Codebook

    book = Codebook.from_yaml(args.codebook)
    if args.export:
        return export(args, book)
    if not args.coders:
        raise UsageError("give the coders with --coders alice,bob (or --export PATH)")
    coders = parse_coders(args.coders)
    sock = bind(args.host, args.port)
    project = open_annotation(
        args.sample,
        book,
        coders,
        store_path=args.store,
        text_column=args.text_column,
        id_column=args.id_column,
        overlap=args.overlap,
        seed=args.seed,
        resamples=args.resamples,
    )
    serve(project, sock, args.host, args.port)
    return 0


def export(args: argparse.Namespace, book: Any) -> int:
    from ..annotate import default_store_path, export_frame, open_annotation
    from ..annotate.export import SPREADSHEET_FORMATS, for_spreadsheet
    from ..evaluate.columns import human_column, tie_column
    from ..tables import check_output, table_format, write_table

    check_output(args.sample, args.export)
    store = Path(args.store) if args.store else default_store_path(args.sample)
    if not store.is_file():
        raise DataError(f"{store}: no annotation store to export (give the one used with --store)")
    project = open_annotation(
        args.sample,
        book,
        None,
        store_path=store,
        text_column=args.text_column,
        id_column=args.id_column,
    )
    frame = export_frame(book, project.sample, project.store)
    coders = project.store.coders()
    if table_format(args.export) in SPREADSHEET_FORMATS:
        frame = for_spreadsheet(frame, book, project.sample, coders)
    write_table(frame, args.export)
    print(
        f"textcoder annotate: wrote {len(frame)} rows with the codes of "
        f"{len(coders)} coder(s) ({', '.join(coders) or 'none yet'}) to {args.export}"
    )
    for var in book.variables:
        tie, human = frame[tie_column(var.name)], frame[human_column(var.name)]
        if tie.any():
            left = int((tie & (human == "")).sum())
            print(
                f"textcoder annotate: {var.name}: {int(tie.sum())} text(s) tied, {left} of them "
                f"unresolved ({human_column(var.name)} empty; resolve them on the admin page)"
            )
    return 0


def serve(project: Any, sock: socket.socket, host: str, port: int) -> None:
    """Print each coder's URL and the admin's, then serve on the bound socket until Ctrl-C."""
    import uvicorn

    from ..annotate.app import create_app

    shown = f"[{host}]" if ":" in host else host
    base = f"http://{shown}:{port}"
    n = len(project.sample.ids)
    print(f"textcoder annotate: {n} texts; codes kept in {project.store.path}", flush=True)
    for coder in project.assignment:
        size = len(project.assignment[coder])
        token = project.tokens[coder]
        print(f"  {coder} ({size} texts): {base}/coder/{coder}?token={token}", flush=True)
    print(f"  admin: {base}/admin?token={project.tokens['']}", flush=True)
    if host not in LOOPBACK:
        print(
            f"textcoder annotate: listening on {host} over plain HTTP: anyone on the network "
            "path can read the tokens; prefer 127.0.0.1 and an SSH tunnel",
            file=sys.stderr,
            flush=True,
        )
    print("Ctrl-C stops the server; every choice is saved as it is made.", flush=True)
    config = uvicorn.Config(create_app(project), log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
