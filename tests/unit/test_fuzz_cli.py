"""`python -m fuzz`: what `make fuzz` prints and returns, without fuzzing for long."""

from __future__ import annotations

from pathlib import Path

import pytest

from fuzz import cli, corpus, engine_atheris, registry
from fuzz.results import Result

LIBFUZZER_LOG = """\
INFO: Seed: 1234
#2	INITED cov: 88 ft: 120 corp: 14/39Kb exec/s: 0 rss: 60Mb
#1024	pulse  cov: 95 ft: 160 corp: 20/41Kb lim: 4096 exec/s: 512 rss: 61Mb
#4096	NEW    cov: 97 ft: 170 corp: 23/42Kb lim: 4096 exec/s: 600 rss: 61Mb L: 12/4096 MS: 1 ChangeBit-
 === Uncaught Python exception: ===
OracleFailure: chunking changed the outcome
Traceback (most recent call last):
==4321== ERROR: libFuzzer: fuzz target exited
artifact_prefix='fuzz/crashes/x-'; Test unit written to fuzz/crashes/x-crash-abc
stat::number_of_executed_units: 4100
"""


def test_libfuzzer_output_gives_executions_corpus_and_crash() -> None:
    result = Result("x", "atheris")
    engine_atheris.parse_output(result, LIBFUZZER_LOG)
    assert (result.executions, result.corpus) == (4100, 23)
    assert result.crashes == [Path("fuzz/crashes/x-crash-abc")]
    assert result.note == "OracleFailure: chunking changed the outcome"


def test_list_names_every_target(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == list(registry.TARGETS)


def test_a_short_hypothesis_run_is_clean(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["run", "--seconds", "0.5", "--target", "admin_parser", "--engine", "hypothesis"]) == 0
    out = capsys.readouterr().out
    assert "admin_parser     hypothesis" in out and "0 target(s) with crashes" in out


def test_a_crash_is_saved_reported_and_reproduced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(corpus, "CRASH_DIR", tmp_path)
    broken = registry.Target("admin_parser", "tests.unit.test_fuzz_cli:broken_target", 64, "raises on ';'")
    monkeypatch.setitem(registry.TARGETS, "admin_parser", broken)
    assert cli.main(["run", "--seconds", "2", "--target", "admin_parser", "--engine", "hypothesis"]) == 1
    out = capsys.readouterr().out
    (saved,) = tmp_path.iterdir()
    assert b";" in saved.read_bytes()
    assert "1 target(s) with crashes" in out and "python -m fuzz repro admin_parser" in out
    assert cli.main(["repro", "admin_parser", str(saved)]) == 1
    assert "FAILED" in capsys.readouterr().out


def broken_target(data: bytes) -> None:
    if b";" in data:
        raise IndexError("a bug")
