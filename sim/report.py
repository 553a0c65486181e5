"""How a run is told to a person: the violation, the seed, and the events that led to it."""

from __future__ import annotations

from pgdog_ev.eventlog.format import format_record
from sim.run import RunResult
from state.events import RECORD_SIZE, decode_records

#: Events printed before the first violation.
CONTEXT = 25


def events_before(result: RunResult, at_ns: int, count: int = CONTEXT) -> list[str]:
    data = result.log[: len(result.log) - len(result.log) % RECORD_SIZE]
    records = [r for r in decode_records(data) if r.now_ns <= at_ns]
    return [format_record(r, result.header) for r in records[-count:]]


def describe_failure(result: RunResult, *, context: int = CONTEXT) -> str:
    first = result.violations[0]
    at = first.at - result.header.monotonic_start_ns / 1e9
    mutant = f" --mutant {result.mutant}" if result.mutant else ""
    lines = [
        f"FAIL {result.scenario} seed {result.seed}{mutant}: {first.invariant} at +{at:.6f}s",
        f"  {first.detail}",
    ]
    for extra in result.violations[1:5]:
        lines.append(f"  also {extra.invariant}: {extra.detail}")
    if len(result.violations) > 5:
        lines.append(f"  ... and {len(result.violations) - 5} more")
    lines.append(f"  rerun: pgdog-ev sim {result.scenario} --seed {result.seed}{mutant}")
    lines.append(f"  last {context} events before it:")
    lines += ["    " + line for line in events_before(result, round(first.at * 1e9), context)]
    return "\n".join(lines)


def describe_ok(result: RunResult) -> str:
    s = result.stats
    return (f"ok {result.scenario} seed {result.seed}: {result.sim_seconds:.1f} s simulated in "
            f"{result.wall_seconds:.2f} s ({result.sim_seconds / max(result.wall_seconds, 1e-9):.1f}x), "
            f"{s['requests']} requests, {s['acked']} acknowledged rows, {s['bans']} bans, "
            f"{s['restarts'] - 1} proxy restarts, digest {result.digest[:16]}")
