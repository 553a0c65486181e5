"""The benchmark harness (`make bench`) end to end, on the `tiny` profile.

Benchmarks are never part of `make test`: their numbers mean nothing on a loaded test machine and
they take half an hour. But a harness that only runs twice a year rots, so this runs the whole of
it for about half a minute (two cells, one 2-second round, 50 idle clients, no simulator) and
checks the shape of what it writes and that the numbers are plausible, not what they are.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from bench.pgbouncer import find_pgbouncer

pytestmark = pytest.mark.integration

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_tiny_benchmark_end_to_end(tmp_path):
    """One test, not several sharing a fixture: under pytest-xdist each worker would run the harness."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") or k.startswith("PGDOG")}
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--profile", "tiny", "--out-dir", str(tmp_path), "--name", "tiny"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=240, env=env, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, (
        f"python -m bench --profile tiny exited {proc.returncode}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    with open(tmp_path / "tiny.json") as f:
        doc = json.load(f)
    check_results(doc)
    check_markdown_and_chart(doc, str(tmp_path), proc.stdout)


def check_results(doc: dict) -> None:
    """The JSON: every cell and target, plausible numbers, ratios, idle clients, verdicts."""
    assert doc["complete"] is True
    for key in ("cpu_count", "kernel", "postgres", "pgbouncer", "python", "git_commit"):
        assert doc["machine"][key], key
    assert [c["id"] for c in doc["cells"]] == ["S-simple-16", "S-prepared-16"]
    bouncer = find_pgbouncer() is not None
    for cell in doc["cells"]:
        assert {"direct", "pgdog-ev", "pgdog-ev-split", "pgdog-ev-split-self"} <= set(cell["targets"])
        assert ("relay" in cell["targets"]) == (cell["id"] == "S-simple-16")
        assert ("pgbouncer" in cell["targets"]) == bouncer
        for name in cell["targets"]:
            rounds = cell["rounds"][name]
            assert len(rounds) == 1 and rounds[0]["error"] is None, (name, rounds)
            med = cell["median"][name]
            assert med["tps"] > 0 and med["avg_ms"] > 0 and med["p99_ms"] > 0, (name, med)
            # Direct runs have no proxy, so no proxy CPU; every proxy used some.
            assert (med["cpu_us_per_xact"] is None) == (name == "direct"), (name, med)
        ratios = cell["ratios"]["pgdog-ev"]
        assert ratios["tps_vs_direct"] > 0
        if bouncer:
            assert ratios["tps_vs_pgbouncer"] > 0 and ratios["cpu_vs_pgbouncer"] > 0
    simple = doc["cells"][0]
    assert "pgdog-ev-nolog" in simple["targets"]
    prepared = doc["cells"][1]
    if bouncer and "pgbouncer" in prepared["unsupported"]:
        # PgBouncer without prepared statements: measured with -M extended instead, and said so.
        assert prepared["substitutes"] == {"pgbouncer": "extended"}
        assert prepared["ratios"]["pgdog-ev"]["pgbouncer_reference"] == "pgbouncer -M extended"
    idle = {e["proxy"]: e for e in doc["idle_rss"]}
    assert idle["pgdog-ev"]["clients"] == 50
    assert idle["pgdog-ev"]["logged_in"] == 50 and idle["pgdog-ev"]["dropped"] == 0
    assert idle["pgdog-ev"]["rss_after"] >= idle["pgdog-ev"]["rss_before"] > 0
    assert ("pgbouncer" in idle) == bouncer
    # The split measured apart from a second server: two entries, the replica's on the primary.
    assert doc["targets"]["pgdog-ev-split-self"]["replica_on_primary"] is True
    assert doc["targets"]["pgdog-ev-split"]["replica_on_primary"] is False
    checks = doc["target_checks"]
    if bouncer:
        assert {c["target"] for c in checks} >= {
            "TPS pgdog-ev r/w split / PgBouncer", "TPS r/w split, replica entry on the primary / PgBouncer"}
    assert {c["result"] for c in checks} <= {"PASS", "MISS", "N/A"}
    assert any(c["target"].startswith("event log cost") and c["result"] != "N/A" for c in checks)
    assert any(c["target"] == "RSS per idle client" and c["result"] != "N/A" for c in checks)


def check_markdown_and_chart(doc: dict, out_dir: str, stdout: str) -> None:
    """The tables exist, are printed, and the chart is a PNG (or its absence is explained)."""
    with open(os.path.join(out_dir, "tiny.md")) as f:
        md = f.read()
    assert "| workload | clients | target | TPS |" in md
    for text in ("| -S simple | 16 | pgdog-ev |", "| -S prepared | 16 | pgdog-ev |", "## Memory per idle client",
                 "## Targets"):
        assert text in md, text
    assert "**PASS**" in md or "**MISS**" in md
    assert md.strip() in stdout  # `make bench` prints the table too
    png = os.path.join(out_dir, "tiny.png")
    if importlib.util.find_spec("matplotlib") is None:
        assert not os.path.exists(png)
        assert any("matplotlib is not installed" in n for n in doc["notes"])
    else:
        with open(png, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
