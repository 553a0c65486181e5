"""Shrinking a failure: the same seed with fewer clients and fewer faults, while it still fails.

Greedy, like a delta-debugging pass: try dropping each fault, then lowering each
client count (to zero, then halving, then by one); keep any change after which
the run still violates the same invariant. The seed stays fixed, so the smaller
scenario is still one reproducible run, printed as YAML to paste into a file.
"""

from __future__ import annotations

from collections.abc import Callable

import yaml

from sim.run import RunResult, run
from sim.scenario import Scenario

#: Runs a shrink may spend before settling for what it has.
BUDGET = 40


def shrink(sc: Scenario, seed: int, mutant: str | None, invariant: str,
           progress: Callable[[str], None] | None = None, budget: int = BUDGET) -> tuple[Scenario, RunResult | None]:
    """The smallest variant of ``sc`` found that still fails ``invariant`` with ``seed``."""
    best = sc
    best_result: RunResult | None = None
    spent = 0

    def fails(candidate: Scenario) -> RunResult | None:
        nonlocal spent
        spent += 1
        result = run(candidate, seed, mutant)
        if any(v.invariant == invariant for v in result.violations):
            return result
        return None

    changed = True
    while changed and spent < budget:
        changed = False
        for i in range(len(best.faults)):
            if spent >= budget:
                break
            candidate = best.with_changes(faults=best.faults[:i] + best.faults[i + 1:])
            result = fails(candidate)
            if result is not None:
                best, best_result, changed = candidate, result, True
                if progress:
                    progress(f"dropped fault {sc.faults[i]['kind'] if i < len(sc.faults) else i}")
                break
        if changed:
            continue
        for kind, count in best.clients.items():
            if count == 0:
                continue
            for smaller in dict.fromkeys((0, count // 2, count - 1)):
                if spent >= budget or smaller >= count:
                    continue
                clients = dict(best.clients)
                clients[kind] = smaller
                if not any(clients.values()):
                    continue
                result = fails(best.with_changes(clients=clients))
                if result is not None:
                    best, best_result, changed = best.with_changes(clients=clients), result, True
                    if progress:
                        progress(f"{kind}: {count} -> {smaller} clients")
                    break
            if changed:
                break
    return best, best_result


def as_yaml(sc: Scenario) -> str:
    doc = {
        "name": f"{sc.name}_min",
        "duration": sc.duration,
        "settle": sc.settle,
        "hosts": sc.hosts,
        "roles": sc.roles,
        "clients": {k: v for k, v in sc.clients.items() if v},
        "faults": sc.faults,
    }
    if sc.general:
        doc["general"] = sc.general
    if sc.client_options:
        doc["client_options"] = sc.client_options
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=None)
