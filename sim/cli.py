"""``pgdog-ev sim``: run scenarios in the simulator.

    pgdog-ev sim --list                          scenarios and mutants
    pgdog-ev sim SCENARIO --seed N [--out F]     one run; writes its event log
    pgdog-ev sim SCENARIO --seeds 50             many seeds of one scenario
    pgdog-ev sim --all [--seeds N] [--jobs J]    every scenario (what `make sim` runs)
    pgdog-ev sim SCENARIO --mutant NAME --seed N a deliberately broken proxy

Exit status: 0 all runs passed, 1 a run failed an invariant, 2 usage error.
"""

from __future__ import annotations

import argparse
import os
import sys

PROG = "pgdog-ev sim"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Run pgdog-ev's state machines in the deterministic simulator.")
    p.add_argument("scenario", nargs="?", help="scenario name (in sim/scenarios) or path to a YAML file")
    p.add_argument("--seed", type=int, help="run this one seed and write its event log")
    p.add_argument("--seeds", type=int, help="how many seeds per scenario (default: the file's, else 30)")
    p.add_argument("--first-seed", type=int, default=1, help="first seed of a multi-seed run (default 1)")
    p.add_argument("--all", action="store_true", help="every scenario in sim/scenarios")
    p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes (default 2)")
    p.add_argument("--mutant", help="run with a deliberately broken mechanism (see --list)")
    p.add_argument("--out", help="event log file for --seed (default sim-SCENARIO-SEED.evlog)")
    p.add_argument("--no-log", action="store_true", help="with --seed: do not write the event log")
    p.add_argument("--no-shrink", action="store_true", help="do not shrink a failure")
    p.add_argument("--list", action="store_true", help="list scenarios and mutants")
    return p


def _hash_seed_fixed(argv: list[str], mutant: bool) -> None:
    """Same seed, same bytes needs the same string hashing: re-run under PYTHONHASHSEED=0.
    A mutant replaces methods of the state machines, which their compiled build would not
    call: it runs on the sources (pgdog_ev.native)."""
    from pgdog_ev import native

    pure = mutant and native.STATUS == "compiled"
    if os.environ.get("PYTHONHASHSEED") != "0" or pure:
        env = dict(os.environ, PYTHONHASHSEED="0")
        if pure:
            env[native.PURE_ENV] = "1"
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, "-m", "pgdog_ev", "sim", *argv], env)


def sim_main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    from sim import scenario as scenarios
    from sim.mutants import MUTANTS

    if args.list:
        print("scenarios:")
        for name in scenarios.names():
            sc = scenarios.load(name)
            print(f"  {name:<22} {sc.description}")
        print("mutants:")
        for m in MUTANTS.values():
            print(f"  {m.name:<22} {m.description} (scenario {m.scenario}; caught by {', '.join(m.caught_by)})")
        return 0
    if args.mutant is not None and args.mutant not in MUTANTS:
        print(f"{PROG}: error: unknown mutant {args.mutant!r} (known: {', '.join(MUTANTS)})", file=sys.stderr)
        return 2
    if args.all == (args.scenario is not None) and not (args.mutant and not args.scenario):
        print(f"{PROG}: error: give a SCENARIO or --all (see --list)", file=sys.stderr)
        return 2
    name = args.scenario or (MUTANTS[args.mutant].scenario if args.mutant and not args.all else None)
    try:
        names = scenarios.names() if args.all else [scenarios.load(name).path]  # type: ignore[arg-type]
    except scenarios.ScenarioError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    _hash_seed_fixed(argv, args.mutant is not None)
    if args.seed is not None:
        return _one(names[0], args.seed, args)
    from sim.runner import run_all

    return run_all(names, args.seeds, args.first_seed, max(1, args.jobs), args.mutant,
                   shrink_failures=not args.no_shrink)


def _one(path: str, seed: int, args: argparse.Namespace) -> int:
    from sim import scenario as scenarios
    from sim.report import describe_failure, describe_ok
    from sim.run import run

    sc = scenarios.load(path)
    result = run(sc, seed, args.mutant)
    if not args.no_log:
        out = args.out or f"sim-{sc.name}-{seed}{'-' + args.mutant if args.mutant else ''}.evlog"
        with open(out, "wb") as f:
            f.write(result.header.encode())
            f.write(result.log)
        print(f"event log: {out} ({len(result.log) // 48} records; read it with: pgdog-ev replay {out})")
    if result.ok:
        print(describe_ok(result))
        return 0
    print(describe_failure(result))
    if not args.no_shrink:
        from sim.shrink import as_yaml, shrink

        print(f"\nshrinking (same seed, fewer clients and faults, while {result.violations[0].invariant} fails) ...")
        smaller, found = shrink(sc, seed, args.mutant, result.violations[0].invariant,
                                progress=lambda msg: print(f"  {msg}"))
        if found is None:
            print("  could not make it smaller; the scenario above is the reproduction")
        else:
            print(f"  minimal reproduction (seed {seed}):")
            print("".join("    " + line + "\n" for line in as_yaml(smaller).splitlines()), end="")
    return 1
