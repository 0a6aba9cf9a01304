"""Load on `textcoder serve` and on llama.cpp's server, same GGUF, same request.

1, 4 and 16 concurrent clients each send the seed tutorial's classification request
(`logprobs=True, top_logprobs=20`, temperature 0) back to back for a fixed time, through the
official async `openai` client, first against `textcoder serve`, then against llama.cpp's own
server on the same GGUF (run by the `xllamacpp` wheel, pip extra `bench`), each server in its
own process with the same number of threads. Prints requests per second, p50 and p95 latency
and errors per server and concurrency, and textcoder's throughput as a share of llama.cpp's.

    python bench/serve_load.py --seconds 20 --threads 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai

ROOT = Path(__file__).resolve().parent.parent
SYSTEM = (
    "Act like a sentiment classification system.\n\nYou will be provided with a tweet, and "
    "your task is to classify its sentiment as positive, neutral, or negative.\n\nCategorize "
    'the text enclosed in triple quotes into one of the following categories: "positive", '
    '"neutral", "negative"'
)
MESSAGES = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Text: '''I loved the new Batman movie!'''"},
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], health: str, timeout: float = 180.0) -> subprocess.Popen[bytes]:
    """Start a server process and poll its health URL until it answers 200."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[:4]} exited with {proc.returncode}")
        try:
            if httpx.get(health, timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{cmd[:4]} not healthy in {timeout} s")


def llamacpp_server(port: int, threads: int, parallel: int) -> None:
    """Run llama.cpp's server (xllamacpp) on the embedded GGUF until killed."""
    import xllamacpp

    from textcoder.models import resolve_model

    p = xllamacpp.CommonParams()
    p.model.path = str(resolve_model(None).path)
    p.n_ctx = 8192 * max(1, parallel) if parallel > 1 else 8192
    p.n_parallel = parallel
    p.cpuparams.n_threads = threads
    p.cpuparams_batch.n_threads = threads
    p.port = port
    p.hostnames = ["127.0.0.1"]
    p.verbosity = -1
    server = xllamacpp.Server(p)
    print(server.listening_address, flush=True)
    while True:
        time.sleep(3600)


async def load(
    base_url: str, model: str, clients: int, seconds: float, max_tokens: int
) -> dict[str, Any]:
    """`clients` loops sending the request for `seconds`; latencies and errors."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=120)
    latencies: list[float] = []
    errors: list[str] = []
    stop_at = time.perf_counter() + seconds

    async def one_client() -> None:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                r = await client.chat.completions.create(
                    model=model,
                    messages=MESSAGES,  # type: ignore[arg-type]
                    logprobs=True,
                    top_logprobs=20,
                    temperature=0,
                    max_tokens=max_tokens,
                )
                lp = r.choices[0].logprobs
                if lp is None or not lp.content or len(lp.content[0].top_logprobs) != 20:
                    errors.append("no top_logprobs")
                    continue
            except openai.OpenAIError as exc:
                errors.append(type(exc).__name__)
                continue
            latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(clients)))
    wall = time.perf_counter() - t0
    await client.close()
    latencies.sort()

    def pct(q: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(q * len(latencies)))]
            if latencies
            else float("nan")
        )

    return {
        "rps": len(latencies) / wall,
        "p50": pct(0.50),
        "p95": pct(0.95),
        "ok": len(latencies),
        "errors": len(errors),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="time per concurrency level")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--max-tokens", type=int, default=5)
    ap.add_argument("--parallel", type=int, default=4, help="llama.cpp server slots (-np)")
    ap.add_argument(
        "--textcoder-parallel",
        type=int,
        default=1,
        help="textcoder serve --parallel P: copies sharing --threads (default 1)",
    )
    ap.add_argument("--only", choices=["textcoder", "llamacpp"], help="benchmark one server")
    ap.add_argument("--llamacpp-server", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.llamacpp_server:
        llamacpp_server(args.llamacpp_server, args.threads, args.parallel)
        return 0
    levels = [int(c) for c in args.clients.split(",")]
    servers: dict[str, tuple[list[str], str]] = {}
    port = free_port()
    if args.only in (None, "textcoder"):
        tp = max(1, args.textcoder_parallel)
        name = "textcoder serve" + (f" (--parallel {tp})" if tp > 1 else "")
        servers[name] = (
            [
                *(sys.executable, "-m", "textcoder", "serve", "--port", str(port)),
                *("--threads", str(args.threads), "--parallel", str(tp)),
            ],
            f"http://127.0.0.1:{port}",
        )
    port2 = free_port()
    if args.only in (None, "llamacpp"):
        servers[f"llama.cpp server (-np {args.parallel})"] = (
            [
                sys.executable,
                __file__,
                "--llamacpp-server",
                str(port2),
                "--threads",
                str(args.threads),
                "--parallel",
                str(args.parallel),
            ],
            f"http://127.0.0.1:{port2}",
        )
    results: dict[str, dict[int, dict[str, Any]]] = {}
    for name, (cmd, base) in servers.items():
        proc = start(cmd, f"{base}/health")
        try:
            asyncio.run(load(f"{base}/v1", "smollm2", 1, 2.0, args.max_tokens))  # warm-up
            results[name] = {}
            for c in levels:
                r = asyncio.run(load(f"{base}/v1", "smollm2", c, args.seconds, args.max_tokens))
                results[name][c] = r
                print(
                    f"{name:28s} clients {c:3d}: {r['rps']:6.2f} req/s  p50 {r['p50'] * 1000:7.0f} ms  "
                    f"p95 {r['p95'] * 1000:7.0f} ms  ok {r['ok']:5d}  errors {r['errors']}",
                    flush=True,
                )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    names = list(results)
    if len(names) == 2:
        ours, theirs = names
        print("\nthroughput of textcoder serve as a share of llama.cpp's server:")
        for c in levels:
            share = results[ours][c]["rps"] / max(results[theirs][c]["rps"], 1e-9)
            print(f"  clients {c:3d}: {share:6.1%}")
    print(
        f"(threads {args.threads}, {args.seconds:.0f} s per level, max_tokens {args.max_tokens}, cores {os.cpu_count()})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
