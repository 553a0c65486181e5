"""Fuzzing with atheris: each target in its own libFuzzer process for a fixed time.

libFuzzer keeps its corpus in a directory it writes to, so the seeds are copied into a
temporary working corpus (generated inputs never land in the repository). Crashes, timeouts and
out-of-memory inputs are written by libFuzzer itself under ``fuzz/crashes/``. The numbers come
from libFuzzer's final statistics, or its last progress line when it stopped early.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fuzz.corpus import CRASH_DIR, HERE, seeds
from fuzz.registry import Target
from fuzz.results import Result

TIMEOUT_SECONDS = 10
RSS_LIMIT_MB = 2048
_PROGRESS = re.compile(r"^#(\d+)\s+\w+.*?\bcorp: (\d+)/", re.MULTILINE)
_EXECUTED = re.compile(r"stat::number_of_executed_units: (\d+)")
_WRITTEN = re.compile(r"Test unit written to (\S+)")
_PYTHON_ERROR = re.compile(r"^ *=== Uncaught Python exception: ===\n(.*)$", re.MULTILINE)
_FUZZER_ERROR = re.compile(r"^==\d+== ERROR: libFuzzer: (.*)$", re.MULTILINE)


def available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def parse_output(result: Result, text: str) -> None:
    """Fill ``result`` from libFuzzer's stderr."""
    progress = _PROGRESS.findall(text)
    if progress:
        result.executions = int(progress[-1][0])
        result.corpus = int(progress[-1][1])
    executed = _EXECUTED.search(text)
    if executed:
        result.executions = int(executed.group(1))
    for path in _WRITTEN.findall(text):
        result.crashes.append(Path(path))
    reason = _PYTHON_ERROR.search(text) or _FUZZER_ERROR.search(text)
    if reason:
        result.note = reason.group(1).strip()[:120]


def run(target: Target, seconds: float) -> Result:
    result = Result(target.name, "atheris")
    CRASH_DIR.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"pgdog-ev-fuzz-{target.name}-"))
    try:
        corpus = work / "corpus"
        corpus.mkdir()
        for name, data in seeds(target.name):
            (corpus / name).write_bytes(data)
        argv = [
            sys.executable, "-m", "fuzz.atheris_worker", target.name,
            f"-max_total_time={max(1, int(seconds))}", f"-max_len={target.max_len}",
            f"-timeout={TIMEOUT_SECONDS}", f"-rss_limit_mb={RSS_LIMIT_MB}", "-print_final_stats=1",
            f"-artifact_prefix={CRASH_DIR}/{target.name}-", str(corpus),
        ]
        log = work / "libfuzzer.log"
        started = time.monotonic()
        # Temporary files of the target (config_files) go in the work directory, removed below:
        # libFuzzer may end the process without running its exit handlers.
        # On the sources: atheris gets its coverage by instrumenting Python bytecode, which the
        # compiled hot path has none of (libFuzzer would run blind and, on the compiled build,
        # its memory grows past the limit within seconds).
        env = {**os.environ, "TMPDIR": str(work), "PGDOG_EV_PURE": "1"}
        with open(log, "wb") as out:
            code = subprocess.run(argv, cwd=HERE.parent, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, check=False).returncode
        result.seconds = time.monotonic() - started
        text = log.read_text(errors="replace")
        parse_output(result, text)
        if code != 0 and not result.crashes:
            result.note = result.note or f"libFuzzer exited {code}"
            print(text[-3000:], file=sys.stderr)
        elif result.crashes:
            print(text[-3000:], file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return result
