"""``make sim``: every scenario for many seeds, on every core, with a progress bar and a table.

Runs are independent processes' work (one seed is one run), so they spread
over a process pool. A failure is reported with its seed and the events that
led to it, then shrunk in the parent to a minimal reproduction.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from dataclasses import dataclass, field
from typing import IO, Any

from sim import scenario as scenarios

#: Seeds per scenario when neither the file nor the command line says (sized for ~5 min on 2 cores).
DEFAULT_SEEDS = 30


@dataclass
class Outcome:
    scenario: str
    seed: int
    ok: bool
    sim_seconds: float
    wall_seconds: float
    digest: str
    first: tuple[str, str] | None = None
    text: str = ""


@dataclass
class Row:
    scenario: str
    seeds: int = 0
    sim_seconds: float = 0.0
    wall_seconds: float = 0.0
    failures: list[int] = field(default_factory=list)


def _one(job: tuple[str, int, str | None]) -> Outcome:
    from sim.report import describe_failure
    from sim.run import run

    name, seed, mutant = job
    sc = scenarios.load(name)
    result = run(sc, seed, mutant)
    first = (result.violations[0].invariant, result.violations[0].detail) if result.violations else None
    return Outcome(name, seed, result.ok, result.sim_seconds, result.wall_seconds, result.digest, first,
                   describe_failure(result) if result.violations else "")


def _bar(done: int, total: int, label: str, started: float, out: IO[str]) -> None:
    if not out.isatty() and done != total and done % max(1, total // 10):
        return  # in a log file: one line per tenth instead of a redrawn bar
    width = 30
    filled = width * done // max(total, 1)
    elapsed = time.perf_counter() - started
    eta = elapsed / done * (total - done) if done else 0.0
    out.write(f"{chr(13) if out.isatty() else ''}[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {elapsed:5.0f}s eta {eta:4.0f}s {label:<40}{'' if out.isatty() else chr(10)}")
    out.flush()


def run_all(names: list[str], seeds: int | None, first_seed: int, jobs: int, mutant: str | None = None,
            shrink_failures: bool = True, out: IO[str] = sys.stdout) -> int:
    work: list[tuple[str, int, str | None]] = []
    for name in names:
        sc = scenarios.load(name)
        count = seeds if seeds is not None else (sc.seeds or DEFAULT_SEEDS)
        work += [(name, first_seed + i, mutant) for i in range(count)]
    # Interleave scenarios so the progress bar's ETA is honest from the start.
    work.sort(key=lambda job: (job[1], names.index(job[0])))
    rows = {name: Row(name) for name in names}
    failures: list[Outcome] = []
    started = time.perf_counter()
    err = sys.stderr
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(jobs, maxtasksperchild=20) as pool:
        for done, outcome in enumerate(pool.imap_unordered(_one, work), 1):
            row = rows[outcome.scenario]
            row.seeds += 1
            row.sim_seconds += outcome.sim_seconds
            row.wall_seconds += outcome.wall_seconds
            if not outcome.ok:
                row.failures.append(outcome.seed)
                failures.append(outcome)
                err.write("\n" + outcome.text + "\n")
            _bar(done, len(work), f"{outcome.scenario} seed {outcome.seed}", started, err)
    err.write("\n")
    total_wall = time.perf_counter() - started
    out.write(table(list(rows.values()), total_wall, jobs) + "\n")
    if failures and shrink_failures:
        _shrink(failures[0], mutant, out)
    return 1 if failures else 0


def table(rows: list[Row], total_wall: float, jobs: int) -> str:
    head = ("scenario", "seeds", "simulated", "wall (cpu)", "sim/real", "failures")
    lines = [f"| {' | '.join(head)} |", "|" + "|".join("---" for _ in head) + "|"]
    sim_total = wall_total = 0.0
    seeds_total = fail_total = 0
    for r in rows:
        sim_total += r.sim_seconds
        wall_total += r.wall_seconds
        seeds_total += r.seeds
        fail_total += len(r.failures)
        failed = ", ".join(f"seed {s}" for s in sorted(r.failures)[:4]) or "0"
        if len(r.failures) > 4:
            failed += f" (+{len(r.failures) - 4})"
        lines.append(f"| {r.scenario} | {r.seeds} | {r.sim_seconds:.0f} s | {r.wall_seconds:.1f} s | "
                     f"{r.sim_seconds / max(r.wall_seconds, 1e-9):.1f}x | {failed} |")
    lines.append(f"| **all** | {seeds_total} | {sim_total:.0f} s | {wall_total:.1f} s | "
                 f"{sim_total / max(wall_total, 1e-9):.1f}x | {fail_total} |")
    lines.append(f"\n{seeds_total} runs in {total_wall:.0f} s of wall time on {jobs} worker processes "
                 f"({sim_total / max(total_wall, 1e-9):.1f} simulated seconds per wall second overall)")
    return "\n".join(lines)


def _shrink(failure: Outcome, mutant: str | None, out: IO[str]) -> None:
    from sim.shrink import as_yaml, shrink

    sc = scenarios.load(failure.scenario)
    invariant = failure.first[0] if failure.first else ""
    out.write(f"\nshrinking {failure.scenario} seed {failure.seed} ({invariant}) ...\n")
    smaller, result = shrink(sc, failure.seed, mutant, invariant, progress=lambda msg: out.write(f"  {msg}\n"))
    if result is None:
        out.write("  could not make it smaller; the scenario above is the reproduction\n")
        return
    out.write(f"  minimal reproduction (seed {failure.seed}):\n")
    out.write("".join("    " + line + "\n" for line in as_yaml(smaller).splitlines()))


def seeds_caught(name: str, mutant: str, max_seeds: int, first_seed: int = 1) -> tuple[int | None, Any]:
    """The first seed at which ``mutant`` is caught on scenario ``name`` (None if not within max_seeds)."""
    from sim.run import run

    sc = scenarios.load(name)
    for seed in range(first_seed, first_seed + max_seeds):
        result = run(sc, seed, mutant)
        if result.violations:
            return seed, result
    return None, None
