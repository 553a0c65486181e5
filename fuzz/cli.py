"""``python -m fuzz run | list | repro``: the long fuzzing run of ``make fuzz`` and its helpers."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from fuzz import engine_atheris, engine_hypothesis
from fuzz.registry import TARGETS, get
from fuzz.results import HEADER, Result, reproduce_lines, row


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fuzz", description="pgdog-ev fuzz targets")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="fuzz every target (or those given) for a while")
    run.add_argument("--seconds", type=float, default=60.0, help="time per target (default 60)")
    run.add_argument("--target", action="append", choices=sorted(TARGETS), metavar="NAME",
                     help="a target to run (repeatable; default: all)")
    run.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto",
                     help="auto: atheris when it is installed, else hypothesis")
    sub.add_parser("list", help="name and describe the targets")
    repro = sub.add_parser("repro", help="run a target on saved inputs (crashes, seeds)")
    repro.add_argument("target", choices=sorted(TARGETS), metavar="TARGET")
    repro.add_argument("files", nargs="+", type=Path)
    return p


def _run(args: argparse.Namespace) -> int:
    engine = args.engine
    if engine == "auto":
        engine = "atheris" if engine_atheris.available() else "hypothesis"
    elif engine == "atheris" and not engine_atheris.available():
        print("atheris is not installed: pip install atheris, or use --engine hypothesis", file=sys.stderr)
        return 2
    names = args.target or list(TARGETS)
    print(f"fuzzing {len(names)} targets for {args.seconds:g} s each with {engine}", flush=True)
    runner = engine_atheris.run if engine == "atheris" else engine_hypothesis.run
    results: list[Result] = []
    for name in names:
        result = runner(get(name), args.seconds)
        results.append(result)
        print(row(result), flush=True)
        for line in reproduce_lines(result):
            print(line, flush=True)
    print()
    print(HEADER)
    for result in results:
        print(row(result))
    crashed = [r for r in results if r.crashes or (r.note and r.engine == "atheris")]
    total = sum(r.executions for r in results)
    print(f"\n{total} executions, {len(crashed)} target(s) with crashes")
    for result in crashed:
        print(f"{result.target}: {result.note}")
        for line in reproduce_lines(result):
            print(line)
    return 1 if crashed else 0


def _repro(args: argparse.Namespace) -> int:
    function = get(args.target).load()
    failed = 0
    for path in args.files:
        try:
            function(path.read_bytes())
        except Exception:
            failed += 1
            print(f"{path}: FAILED")
            traceback.print_exc()
        else:
            print(f"{path}: ok")
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        for target in TARGETS.values():
            print(f"{target.name:<16} {target.summary}")
        return 0
    if args.command == "repro":
        return _repro(args)
    return _run(args)
