"""The simulator can fail: each deliberately broken proxy is caught within a few seeds, by the
invariant that exists to catch it. If a change made the simulator blind to one of these bugs,
this fails."""

from __future__ import annotations

import pytest

from pgdog_ev import native
from sim.mutants import MUTANTS, applied
from sim.runner import seeds_caught
from state.cluster import Cluster

#: Seeds a mutant may survive before the test calls the simulator blind to it.
MAX_SEEDS = 4

# A mutant replaces methods, which compiled callers would never call: these run on the sources
# (make test's second pass, PGDOG_EV_PURE=1).
needs_sources = pytest.mark.skipif(native.STATUS == "compiled", reason="mutants need the pure-Python sources")


@needs_sources
@pytest.mark.parametrize("name", sorted(MUTANTS))
def test_each_mutant_is_caught_within_a_few_seeds(name: str) -> None:
    mutant = MUTANTS[name]
    seed, result = seeds_caught(mutant.scenario, name, MAX_SEEDS)
    assert seed is not None, f"mutant {name} survived {MAX_SEEDS} seeds of {mutant.scenario}"
    found = {v.invariant for v in result.violations}
    assert found & set(mutant.caught_by), f"{name} was caught, but by {found}, not {mutant.caught_by}"


@needs_sources
def test_a_mutant_is_removed_after_its_run() -> None:
    original = Cluster.__dict__["unban"]
    with applied("never_unban"):
        assert Cluster.__dict__["unban"] is not original
    assert Cluster.__dict__["unban"] is original


def test_an_unknown_mutant_is_refused() -> None:
    with pytest.raises(KeyError, match="unknown mutant"), applied("no_such_mutant"):
        pass


@pytest.mark.skipif(native.STATUS != "compiled", reason="the hot path is not compiled")
def test_a_mutant_refuses_compiled_state_machines() -> None:
    with pytest.raises(RuntimeError, match="PGDOG_EV_PURE=1"), applied("never_unban"):
        pass
