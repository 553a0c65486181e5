"""Benchmark result names: only a whole full run gets the bare date, and no run overwrites another."""

from __future__ import annotations

import time
from pathlib import Path

from bench.run import REPO_ROOT, default_name, parse_args, recorded_args, unused_name


def test_only_a_whole_full_run_gets_the_bare_date() -> None:
    today = time.strftime("%Y-%m-%d")
    assert parse_args([]).name == today
    assert parse_args(["--profile", "quick"]).name == f"{today}-quick"
    assert parse_args(["--cells", "S-simple-16"]).name == f"{today}-subset"
    assert parse_args(["--variants", "pgdog-ev"]).name == f"{today}-subset"
    assert default_name("quick", True) == f"{today}-quick-subset"
    explicit = parse_args(["--name", "mine", "--cells", "S-simple-16"])
    assert explicit.name == "mine" and explicit.named


def test_a_second_run_of_the_day_gets_its_own_name(tmp_path: Path) -> None:
    assert unused_name(str(tmp_path), "2026-01-02") == "2026-01-02"
    (tmp_path / "2026-01-02.json").write_text("{}")
    assert unused_name(str(tmp_path), "2026-01-02") == "2026-01-02-2"
    (tmp_path / "2026-01-02-2.json").write_text("{}")
    assert unused_name(str(tmp_path), "2026-01-02") == "2026-01-02-3"


def test_a_results_file_names_no_machine_path(tmp_path: Path) -> None:
    assert recorded_args(parse_args([]))["out_dir"] == "bench/results"
    elsewhere = str(tmp_path)
    assert not elsewhere.startswith(REPO_ROOT)
    assert recorded_args(parse_args(["--out-dir", elsewhere]))["out_dir"] == elsewhere
