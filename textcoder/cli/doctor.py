"""`textcoder doctor`: what is installed, the engine's settings, and whether the embedded model
loads and codes a text on this machine (in a child process, so a crash is reported)."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "doctor", help="check the install: versions, CPU features, and one text coded"
    )
    p.add_argument("--model", help="the local model to try (default: the embedded one)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..doctor import diagnose

    report = diagnose(args.model)
    for line in report.lines:
        print(line)
    if report.problem:
        print(f"textcoder doctor: {report.problem}", file=sys.stderr)
        return 1
    print("textcoder doctor: all good")
    return 0
