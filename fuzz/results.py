"""One target's run, as both engines report it, and the table ``python -m fuzz run`` prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fuzz.corpus import relative


@dataclass
class Result:
    target: str
    engine: str
    executions: int = 0
    seconds: float = 0.0
    corpus: int = 0
    crashes: list[Path] = field(default_factory=list)
    note: str = ""

    @property
    def per_second(self) -> float:
        return self.executions / self.seconds if self.seconds > 0 else 0.0


HEADER = f"{'target':<16} {'engine':<10} {'execs':>10} {'exec/s':>8} {'corpus':>7} {'crashes':>7}"


def row(r: Result) -> str:
    line = (f"{r.target:<16} {r.engine:<10} {r.executions:>10} {r.per_second:>8.0f} {r.corpus:>7} "
            f"{len(r.crashes):>7}")
    return f"{line}  {r.note}" if r.note else line


def reproduce_lines(r: Result) -> list[str]:
    return [f"  crash: {relative(p)}\n  reproduce: .venv/bin/python -m fuzz repro {r.target} {relative(p)}"
            for p in r.crashes]
