"""Fuzzing without atheris: hypothesis draws mutated seeds and fresh bytes until time is up.

The seeds run first, as they are. Then hypothesis runs batches of examples under successive
seeds (so a run is reproducible and each batch explores new inputs) until the time is up; a
failure is shrunk by hypothesis and the smallest failing input is saved as the crash. An input
that runs longer than ``HANG_SECONDS`` counts as a crash too.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from fuzz.corpus import save_crash, seeds
from fuzz.mutate import inputs
from fuzz.registry import Target
from fuzz.results import Result

HANG_SECONDS = 10
FIRST_BATCH = 50
# A batch should take a few seconds: long enough to amortise hypothesis's setup, short enough
# to stop near the deadline.
BATCH_SECONDS = 3.0


class Hang(Exception):
    """An input ran longer than HANG_SECONDS."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise Hang(f"no answer within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run(target: Target, seconds: float) -> Result:
    result = Result(target.name, "hypothesis")
    function = target.load()
    seed_inputs = [data for _name, data in seeds(target.name)]
    result.corpus = len(seed_inputs)
    started = time.monotonic()
    failing: list[bytes] = []

    def one(data: bytes) -> None:
        result.executions += 1
        try:
            with time_limit(HANG_SECONDS):
                function(data)
        except BaseException:
            failing.append(data)
            raise

    try:
        for data in seed_inputs:
            one(data)
        batch, examples = 0, FIRST_BATCH
        strategy = inputs(seed_inputs, target.max_len)
        while time.monotonic() - started < seconds:
            test = settings(
                max_examples=examples, deadline=None, database=None, derandomize=False,
                suppress_health_check=list(HealthCheck), phases=(Phase.generate, Phase.shrink),
                report_multiple_bugs=False,
            )(given(strategy)(one))
            began = time.monotonic()
            hypothesis_seed(batch)(test)()
            took = time.monotonic() - began
            batch += 1
            left = seconds - (time.monotonic() - started)
            examples = max(10, int(examples * min(BATCH_SECONDS, left) / max(took, 1e-3)))
    except Exception as exc:
        result.crashes.append(save_crash(target.name, failing[-1] if failing else b""))
        result.note = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:120]
    result.seconds = time.monotonic() - started
    return result
