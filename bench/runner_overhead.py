"""What textcoder's runner costs on top of the model: wall time, CPU per row, peak memory.

    python bench/runner_overhead.py                      # 5,000 rows; 1,000,000-row memory run
    python bench/runner_overhead.py --big-rows 100000    # a shorter memory run
    python bench/runner_overhead.py --big-rows 0         # skip the memory run
    python bench/runner_overhead.py --profile 64         # cProfile of the concurrency-64 run
    python bench/runner_overhead.py --delay 0 --concurrency 64 256 --big-rows 0 --servers
                                                         # the runner against the bare loop

A loopback server in its own process (so its CPU is not counted) speaks OpenAI's Chat
Completions wire format: one canned ChatCompletion with logprobs, checked once against the
`openai` package's own type, sent `--delay` seconds after each request without blocking other
requests (asyncio, one coroutine per connection). Then:

- `--rows` rows are coded through `Coder.code_file` (the CLI's path: chunked reading, a SQLite
  store committed in groups, chunked writing) at each `--concurrency`; wall time is compared
  with the ideal `rows x delay / concurrency`, and the coding process's CPU time (this process;
  the server is elsewhere) is divided by the rows;
- each of those runs is compared with a bare aiohttp loop posting the same number of
  requests to the same server (`--delay 0` makes that ratio the runner's own cost: target
  at most 1.5x the bare loop at concurrency 64 and 256), and with a second floor: that loop
  also encoding each body from its dict and decoding each answer, as any client must;
- `--big-rows` rows are coded by `python -m textcoder code` in a subprocess against a server
  that answers at once, and its peak RSS (`ru_maxrss` from `wait4`) is reported.

Targets (printout only): wall within 10% of ideal at 64 and 25% at 256; under 2 ms CPU per row;
under 500 MB peak for 1,000,000 rows.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import csv
import http.client
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CODEBOOK = ROOT / "examples" / "sentiment.yaml"
WORDS = [
    "the",
    "new",
    "phone",
    "is",
    "great",
    "but",
    "the",
    "battery",
    "dies",
    "by",
    "noon",
    "and",
    "support",
    "never",
    "calls",
    "back",
    "honestly",
    "loved",
    "the",
    "concert",
    "traffic",
    "was",
    "awful",
    "coffee",
    "fine",
    "weather",
    "grey",
    "again",
    "today",
]


# the loopback server ---------------------------------------------------------------------------


def canned_completion() -> bytes:
    """One ChatCompletion with logprobs over the codebook's labels, as OpenAI sends it."""
    top = [("positive", -0.2), ("negative", -2.0), ("neutral", -3.0)]
    data: dict[str, Any] = {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_bench",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "positive", "refusal": None},
                "logprobs": {
                    "content": [
                        {
                            "token": "positive",
                            "logprob": -0.2,
                            "bytes": list(b"positive"),
                            "top_logprobs": [
                                {"token": t, "logprob": lp, "bytes": list(t.encode())}
                                for t, lp in top
                            ],
                        }
                    ],
                    "refusal": None,
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 60, "completion_tokens": 1, "total_tokens": 61},
    }
    from openai.types.chat import ChatCompletion

    ChatCompletion.model_validate(data)  # the real wire format, checked once
    return json.dumps(data).encode()


def serve(delay: float) -> None:
    """Answer every POST after `delay` seconds (HTTP/1.1 keep-alive); print the port, run on."""
    body = canned_completion()
    ok = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    health = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                if head.startswith(b"POST"):
                    if delay:
                        await asyncio.sleep(delay)
                    writer.write(ok)
                else:
                    writer.write(health)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        async with server:
            await server.serve_forever()

    try:  # the server's own CPU is not textcoder's: the faster loop where it is installed
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


@contextmanager
def loopback(delay: float) -> Iterator[str]:
    """The server in a subprocess; yields its base URL once /health answers."""
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(delay)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        end = time.monotonic() + 30
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    conn.close()
                    break
            except OSError:
                if time.monotonic() > end:
                    raise RuntimeError("the loopback server did not come up") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(10)


# the runs ---------------------------------------------------------------------------------------


def make_table(path: Path, rows: int) -> None:
    """`rows` short distinct texts with an id column, written as they are made."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        n = len(WORDS)
        for i in range(rows):
            words = [WORDS[(i * 7 + k * 3) % n] for k in range(12)]
            w.writerow([f"r{i}", f"{' '.join(words)} #{i}"])


def code_rows(
    url: str | list[str], table: Path, out: Path, concurrency: int, profile: bool
) -> dict[str, float]:
    """Code `table` through `Coder.code_file` with a fresh store; wall and CPU seconds."""
    from textcoder import Coder

    coder = Coder(
        str(CODEBOOK),
        model="gpt-4o-mini",
        base_url=url,
        scoring="logprobs",
        concurrency=concurrency,
        timeout=120.0,
    )
    # timed by CPU, not wall clock: other processes on a shared machine do not inflate it
    prof = cProfile.Profile(time.process_time) if profile else None
    wall, cpu = time.perf_counter(), time.process_time()
    if prof is not None:
        prof.enable()
    stats = coder.code_file(table, out, id_column="id", progress="off")
    if prof is not None:
        prof.disable()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    coder.close()  # its connection pool, while its event loop still runs
    if stats.failed or stats.requests != stats.rows:
        raise RuntimeError(f"{stats.failed} failed, {stats.requests} requests for {stats.rows}")
    if prof is not None:
        rows = stats.rows
        print(f"\n--- cProfile (CPU time), concurrency {concurrency}, {rows:,} rows ---")
        st = pstats.Stats(prof)
        st.sort_stats("tottime").print_stats(25)
        print("own CPU time by where the code lives (ms per row, profiler overhead included):")
        for where, secs in sorted(by_package(st).items(), key=lambda kv: -kv[1])[:14]:
            print(f"  {1000 * secs / rows:7.3f}  {where}")
    return {"wall": wall, "cpu": cpu}


def several_servers(delays: list[float], rows: int, concurrency: int) -> None:
    """Rows per second of each server alone, then of all of them as one pool (`--base-url`
    given once per server), `concurrency` requests in flight per server."""
    from contextlib import ExitStack

    with tempfile.TemporaryDirectory(prefix="textcoder-bench-") as tmp, ExitStack() as stack:
        table = Path(tmp) / "rows.csv"
        make_table(table, rows)
        urls = [stack.enter_context(loopback(d)) for d in delays]
        alone = []
        for i, url in enumerate(urls):
            r = code_rows(url, table, Path(tmp) / f"alone-{i}.csv", concurrency, False)
            alone.append(rows / r["wall"])
        r = code_rows(urls, table, Path(tmp) / "pool.csv", concurrency, False)
        pooled = rows / r["wall"]
    print(f"\nseveral servers: {len(delays)} loopback servers, {concurrency} in flight each")
    for d, rate in zip(delays, alone, strict=True):
        print(f"  alone, answer delay {d:g} s: {rate:8.1f} rows/s")
    total = sum(alone)
    print(f"  sum of the servers alone:    {total:8.1f} rows/s")
    ratio = pooled / total
    print(f"  all {len(delays)} as one pool:          {pooled:8.1f} rows/s  ({ratio:.2f}x the sum)")
    print("  target: the pool within 10% of the sum (>= 0.90x)")


def request_bodies(table: Path) -> list[bytes]:
    """The JSON bodies textcoder posts for the rows of `table` (one request a row)."""
    from textcoder import Coder
    from textcoder._json import to_json
    from textcoder.backends.base import ChatRequest
    from textcoder.table_rows import table_rows

    coder = Coder(
        str(CODEBOOK), model="gpt-4o-mini", base_url="http://127.0.0.1:9/v1", scoring="logprobs"
    )
    planner = coder._runner().planner
    bodies = []
    for row_id, text in table_rows(table, "text", "id", 10_000):
        for unit in planner.plan(text, row_id):
            for req in unit.requests:
                assert isinstance(req, ChatRequest)
                body = coder.backend.request_body(req.messages, req.params)  # type: ignore[attr-defined]
                bodies.append(to_json(body))  # the bytes textcoder posts
    coder.close()
    return bodies


def bare_client(
    url: str, bodies: list[bytes], concurrency: int, json_too: bool = False
) -> dict[str, float]:
    """Wall and CPU seconds of a bare aiohttp loop posting the same `bodies`, `concurrency`
    at a time, to the same server, reading each answer: the floor any Python client pays.
    `json_too`: each body is encoded from its dict and each answer decoded (with textcoder's
    JSON library), the floor of any client that sends requests and reads answers."""
    import aiohttp

    from textcoder._json import from_json, to_json

    sent: list[Any] = [json.loads(b) for b in bodies] if json_too else list(bodies)

    async def run() -> None:
        left = iter(sent)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                for body in left:
                    headers = {"Content-Type": "application/json"}
                    data = to_json(body) if json_too else body
                    async with session.post(
                        f"{url}/chat/completions", data=data, headers=headers
                    ) as r:
                        raw = await r.read()
                    if json_too:
                        from_json(raw)

            await asyncio.gather(*(worker() for _ in range(concurrency)))

    wall, cpu = time.perf_counter(), time.process_time()
    asyncio.run(run())
    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def by_package(st: pstats.Stats) -> dict[str, float]:
    """Own (not cumulative) profiled seconds grouped by package, or by builtin's name."""
    out: dict[str, float] = {}
    raw: dict[Any, Any] = st.stats  # type: ignore[attr-defined]
    for (filename, _, name), (_, _, tottime, _, _) in raw.items():
        if filename == "~":
            where = f"builtin {name}"
        elif "site-packages/" in filename:
            where = filename.split("site-packages/")[1].split("/")[0]
        elif "/textcoder/" in filename:
            where = "textcoder/" + filename.split("/textcoder/")[1]
        else:
            where = "stdlib " + Path(filename).parent.name + "/" + Path(filename).name
        out[where] = out.get(where, 0.0) + tottime
    return out


def peak_rss(url: str, table: Path, out: Path, concurrency: int) -> dict[str, float]:
    """`textcoder code` in a subprocess; its peak RSS in MB and its wall and CPU seconds."""
    cmd = [sys.executable, "-m", "textcoder", "code", str(table), "-c", str(CODEBOOK)]
    cmd += ["-o", str(out), "--id-column", "id", "-m", "gpt-4o-mini", "--base-url", url]
    cmd += ["--scoring", "logprobs", "--concurrency", str(concurrency), "--quiet"]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"textcoder code exited {proc.returncode}")
    return {
        "peak_mb": usage.ru_maxrss / 1024,  # kilobytes on Linux
        "wall": time.perf_counter() - started,
        "cpu": usage.ru_utime + usage.ru_stime,
    }


# the table --------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rows", type=int, default=5000, help="rows of the concurrency runs (5,000)")
    p.add_argument("--delay", type=float, default=0.1, help="server answer delay, s (0.1)")
    p.add_argument("--concurrency", type=int, nargs="*", default=[8, 64, 256])
    p.add_argument(
        "--big-rows", type=int, default=1_000_000, help="rows of the memory run; 0: skip"
    )
    p.add_argument("--big-concurrency", type=int, default=64)
    p.add_argument("--profile", type=int, nargs="*", default=[], help="cProfile these runs")
    p.add_argument(
        "--servers",
        type=float,
        nargs="*",
        default=[0.05, 0.1, 0.2, 0.4],
        help="answer delays of the several-servers case (give none to skip it)",
    )
    p.add_argument("--server-rows", type=int, default=3000, help="rows of each servers run")
    p.add_argument("--serve", type=float, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return
    if args.servers:
        several_servers(args.servers, args.server_rows, 16)

    lines: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="textcoder-bench-") as tmp:
        table = Path(tmp) / "rows.csv"
        make_table(table, args.rows)
        bodies = request_bodies(table)
        cpu_total = rows_total = 0.0
        with loopback(args.delay) as url:
            for conc in args.concurrency:
                out = Path(tmp) / f"coded-{conc}.csv"
                r = code_rows(url, table, out, conc, conc in args.profile)
                ideal = args.rows * args.delay / conc
                target = {64: 1.10, 256: 1.25}.get(conc)
                lines.append(
                    (
                        f"wall, {args.rows:,} rows, concurrency {conc}",
                        f"{r['wall']:.2f} s",
                        f"{r['wall'] / ideal:.2f}x ideal {ideal:.2f} s" if ideal else "-",
                        f"<= {target:.2f}x" if target and ideal else "-",
                    )
                )
                bare = bare_client(url, bodies, conc)
                lines.append(
                    (
                        f"  (the floor: a bare aiohttp loop, same server, concurrency {conc})",
                        f"{bare['wall']:.2f} s",
                        f"{bare['wall'] / ideal:.2f}x ideal" if ideal else "-",
                        "-",
                    )
                )
                floor = bare_client(url, bodies, conc, json_too=True)
                lines.append(
                    (
                        "  (the floor with JSON: that loop encoding bodies, decoding answers)",
                        f"{floor['wall']:.2f} s",
                        f"{floor['wall'] / bare['wall']:.2f}x the bare loop",
                        "-",
                    )
                )
                lines.append(
                    (
                        f"wall against the bare loop, concurrency {conc}",
                        f"{r['wall'] / bare['wall']:.2f}x",
                        f"{r['wall']:.2f} s / {bare['wall']:.2f} s",
                        "<= 1.5x" if conc in (64, 256) else "-",
                    )
                )
                lines.append(
                    (
                        f"CPU against the bare loop, concurrency {conc}",
                        f"{r['cpu'] / bare['cpu']:.2f}x",
                        f"{1000 * r['cpu'] / args.rows:.2f} / "
                        f"{1000 * bare['cpu'] / args.rows:.2f} ms a row",
                        "-",
                    )
                )
                cpu_ms = 1000 * r["cpu"] / args.rows
                lines.append(
                    (
                        f"CPU per row, concurrency {conc}",
                        f"{cpu_ms:.2f} ms",
                        f"{cpu_ms / 2.0:.2f}x target",
                        "< 2 ms",
                    )
                )
                cpu_total += r["cpu"]
                rows_total += args.rows
        if rows_total:
            cpu_ms = 1000 * cpu_total / rows_total
            lines.append(
                ("CPU per row, all runs", f"{cpu_ms:.2f} ms", f"{cpu_ms / 2:.2f}x target", "< 2 ms")
            )
        if args.big_rows:
            big = Path(tmp) / "big.csv"
            make_table(big, args.big_rows)
            with loopback(0.0) as url:
                r = peak_rss(url, big, Path(tmp) / "big.coded.csv", args.big_concurrency)
            lines.append(
                (
                    f"peak RSS, {args.big_rows:,} rows, no delay",
                    f"{r['peak_mb']:.0f} MB",
                    f"{r['peak_mb'] / 500:.2f}x target",
                    "< 500 MB",
                )
            )
            lines.append(
                (
                    f"  (that run: wall, CPU per row, conc {args.big_concurrency})",
                    f"{r['wall']:.0f} s",
                    f"{1000 * r['cpu'] / args.big_rows:.2f} ms CPU/row",
                    "-",
                )
            )
    if not lines:
        return
    widths = [max(len(row[i]) for row in lines) for i in range(4)]
    head = ("measure", "value", "against baseline", "target")
    widths = [max(w, len(h)) for w, h in zip(widths, head, strict=True)]
    print(f"\ntextcoder runner overhead (server delay {args.delay:g} s, {os.cpu_count()} CPUs)")
    for row in (head, tuple("-" * w for w in widths), *lines):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
