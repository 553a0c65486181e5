"""One pgbench run and what it measured: TPS and transaction count from its summary, average and
p99 latency from its per-transaction log, and the proxy's CPU time around it.

The latencies come from the per-transaction log (`-l`), not from the summary, because the summary
has no percentiles. At tens of thousands of transactions per second that log is large and writing
it costs pgbench CPU that the proxy would otherwise get on a 2-core machine, so it is sampled
(`--sampling-rate`); TPS and the transaction count still cover every transaction. A failed run
is a result too (the PgBouncer prepared-statement probe expects one), never an exception.
"""

from __future__ import annotations

import glob
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Any

from bench.procstat import tree_cpu_seconds
from tests.harness.pgbench import pgbench_env

_TPS = re.compile(r"tps = ([0-9.]+) \((?:without initial connection time|excluding connections establishing)\)")
_PROCESSED = re.compile(r"number of transactions actually processed: (\d+)")
_FAILED = re.compile(r"number of failed transactions: (\d+)")


@dataclass
class RunResult:
    """What one pgbench run gives the tables; `error` is set (and the numbers may be None) if it failed."""

    tps: float | None = None
    transactions: int | None = None
    failed: int | None = None
    avg_ms: float | None = None
    p99_ms: float | None = None
    latency_samples: int = 0
    cpu_us_per_xact: float | None = None
    wall_seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.tps is not None and self.tps > 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(sorted_values: list[int], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (q in 0..100)."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def read_latencies(prefix: str) -> list[int]:
    """Latencies in microseconds from pgbench's per-transaction logs PREFIX.<pid>[.<thread>].

    Column 3 is the latency; failed or skipped transactions carry a word there and are left out
    (the summary counts them).
    """
    values: list[int] = []
    for path in glob.glob(prefix + ".*"):
        with open(path) as f:
            for line in f:
                parts = line.split(maxsplit=3)
                if len(parts) >= 3 and parts[2].isdigit():
                    values.append(int(parts[2]))
    return values


def _error_text(output: str) -> str:
    """What went wrong, shortened for the tables: the server's distinct ERROR messages if any,
    else pgbench's own error lines."""
    server = [m.strip() for m in re.findall(r"ERROR:\s+(.*)", output)]
    if server:
        return "; ".join(list(dict.fromkeys(server))[:3])
    lines = [ln.strip() for ln in output.splitlines() if re.search(r"error|fatal|abort|fail", ln, re.I)]
    lines = [ln for ln in lines if not ln.startswith("number of failed")]
    return "; ".join(dict.fromkeys(lines[:3])) or output.strip()[-300:] or "pgbench failed"


def run_pgbench(
    pgbench: str,
    port: int,
    *,
    user: str,
    password: str,
    dbname: str,
    args: list[str],
    seconds: int,
    sampling_rate: float,
    cpu_pid: int | None,
) -> RunResult:
    """Run `pgbench ARGS -T seconds` against 127.0.0.1:port and measure it.

    `cpu_pid`: the proxy whose process tree's CPU time is read before and after (None: direct).
    The CPU delta includes the clients' logins, which pgbench's TPS leaves out; at these
    durations that is a small share, and both proxies pay it.
    """
    log_dir = tempfile.mkdtemp(prefix="pgdog-ev-bench-log-")
    prefix = os.path.join(log_dir, "xact")
    argv = [
        pgbench, "-h", "127.0.0.1", "-p", str(port), "-U", user, "-n",
        *args, "-T", str(seconds),
        "-l", "--log-prefix", prefix, f"--sampling-rate={sampling_rate}", dbname,
    ]  # fmt: skip
    result = RunResult()
    cpu_before = tree_cpu_seconds(cpu_pid)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=seconds * 3 + 120,
            env=pgbench_env(password), stdin=subprocess.DEVNULL, cwd=log_dir,
        )
        output = proc.stdout + proc.stderr
        returncode = proc.returncode
    except subprocess.TimeoutExpired as e:
        output = f"pgbench timed out after {e.timeout:.0f}s"
        returncode = -1
    result.wall_seconds = time.monotonic() - started
    cpu_used = tree_cpu_seconds(cpu_pid) - cpu_before
    try:
        if m := _TPS.search(output):
            result.tps = float(m.group(1))
        if m := _PROCESSED.search(output):
            result.transactions = int(m.group(1))
        if m := _FAILED.search(output):
            result.failed = int(m.group(1))
        if returncode == 0 and result.transactions == 0:
            # pgbench's clock starts before the logins: on a loaded machine they can use up -T.
            result.error = f"no transaction completed in the {seconds} s run (logins slower than -T?)"
            return result
        if returncode != 0 or not result.tps or not result.transactions:
            result.error = _error_text(output)
            return result
        if cpu_pid is not None:
            result.cpu_us_per_xact = cpu_used / result.transactions * 1e6
        latencies = sorted(read_latencies(prefix))
        result.latency_samples = len(latencies)
        if latencies:
            result.avg_ms = sum(latencies) / len(latencies) / 1000
            result.p99_ms = percentile(latencies, 99) / 1000
        return result
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
