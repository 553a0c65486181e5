"""Turning a benchmark's results (the JSON document bench/run.py writes) into the targets' verdicts,
the Markdown tables and the PNG chart.

Everything here reads only the results document, so a table or chart can be made again from an
old `bench/results/*.json` (`python -m bench.report FILE.json`) without running anything.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from collections.abc import Iterable
from typing import Any

# The cells whose pgdog-ev throughput and CPU per transaction the targets compare with PgBouncer's.
TARGET_CELLS: tuple[tuple[str, str, int], ...] = (
    ("select", "simple", 16),
    ("select", "simple", 64),
    ("select", "extended", 16),
    ("select", "extended", 64),
    ("select", "prepared", 16),
    ("select", "prepared", 64),
    ("tpcb", "simple", 16),
)
TPS_VS_PGBOUNCER_MIN = 1.0
CPU_VS_PGBOUNCER_MAX = 1.15
SPLIT_VS_PGBOUNCER_MIN = 0.95
# The split's target row, then the same split with its replica entry on the primary's server: what
# classifying and routing cost the proxy, apart from a second PostgreSQL sharing the two cores.
SPLIT_TARGETS: tuple[tuple[str, str], ...] = (
    ("pgdog-ev-split", "TPS pgdog-ev r/w split / PgBouncer"),
    ("pgdog-ev-split-self", "TPS r/w split, replica entry on the primary / PgBouncer"),
)
EVENT_LOG_COST_MAX = 0.05
RSS_PER_CLIENT_MAX = 4096
IDLE_CLIENTS_GOAL = 10_000

REFERENCE_FOOTNOTE = "vs PgBouncer -M extended at the same client count (PgBouncer has no prepared statements here)"


def cell_label(cell: dict[str, Any]) -> str:
    """'-S simple' or 'TPC-B': the workload column."""
    return f"-S {cell['mode']}" if cell["script"] == "select" else "TPC-B"


def find_cell(doc: dict[str, Any], script: str, mode: str, clients: int) -> dict[str, Any] | None:
    for cell in doc.get("cells", []):
        if (cell["script"], cell["mode"], cell["clients"]) == (script, mode, clients):
            return cell
    return None


def median_of(rounds: Iterable[dict[str, Any]], key: str) -> float | None:
    """Median of one metric over the rounds that measured it (None if none did)."""
    values = [r[key] for r in rounds if r.get("error") is None and r.get(key) is not None]
    return statistics.median(values) if values else None


def spread_pct(rounds: list[dict[str, Any]]) -> float | None:
    """Half the min-max range of TPS over the rounds, as a percentage of the median: the noise."""
    values = [r["tps"] for r in rounds if r.get("error") is None and r.get("tps")]
    if len(values) < 2:
        return None
    return (max(values) - min(values)) / 2 / statistics.median(values) * 100


def summarize_cell(cell: dict[str, Any], kinds: dict[str, str]) -> None:
    """Fill cell['median'] and cell['ratios'] from cell['rounds'] (in place).

    Ratios are given for every pgdog-ev target against PgBouncer in the same cell (which, in a
    prepared-statement cell where PgBouncer cannot run -M prepared, was run with -M extended and
    says so in cell['substitutes']) and against direct.
    """
    medians: dict[str, dict[str, Any]] = {}
    for name, rounds in cell["rounds"].items():
        errors = [r["error"] for r in rounds if r.get("error")]
        medians[name] = {
            "tps": median_of(rounds, "tps"),
            "avg_ms": median_of(rounds, "avg_ms"),
            "p99_ms": median_of(rounds, "p99_ms"),
            "cpu_us_per_xact": median_of(rounds, "cpu_us_per_xact"),
            "tps_spread_pct": spread_pct(rounds),
            "rounds_ok": len(rounds) - len(errors),
            "error": errors[0] if errors else None,
        }
    cell["median"] = medians
    ratios: dict[str, dict[str, Any]] = {}
    bouncer = medians.get("pgbouncer", {})
    direct = medians.get("direct", {})
    for name, med in medians.items():
        if kinds.get(name) != "pgdog-ev":
            continue
        ratios[name] = {
            "tps_vs_pgbouncer": _ratio(med.get("tps"), bouncer.get("tps")),
            "tps_vs_direct": _ratio(med.get("tps"), direct.get("tps")),
            "cpu_vs_pgbouncer": _ratio(med.get("cpu_us_per_xact"), bouncer.get("cpu_us_per_xact")),
            "pgbouncer_reference": (
                f"pgbouncer -M {cell['substitutes']['pgbouncer']}" if "pgbouncer" in cell.get("substitutes", {})
                else "pgbouncer"
            ),
        }
    cell["ratios"] = ratios


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# --------------------------------------------------------------------------- targets


def _verdict(value: float | None, ok: bool) -> str:
    return "N/A" if value is None else ("PASS" if ok else "MISS")


def evaluate_targets(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (target, cell) that this run measured, with the value, the limit and PASS/MISS.

    Cells a profile did not run are left out, except the 10,000-idle-clients goal, which says
    "not run" so a quick run cannot be mistaken for having met it.
    """
    checks: list[dict[str, Any]] = []

    def add(target: str, where: str, value: float | None, limit: str, ok: bool, shown: str, note: str = "",
            noise: float | None = None) -> None:
        checks.append({"target": target, "where": where, "value": value, "shown": shown, "limit": limit,
                       "result": _verdict(value, ok), "note": note, "noise_pct": noise})

    def noise(cell: dict[str, Any], *names: str) -> float | None:
        """The larger TPS spread of the compared targets: how far a verdict can be trusted."""
        spreads = [cell["median"].get(n, {}).get("tps_spread_pct") for n in names]
        return max((s for s in spreads if s is not None), default=None)

    for script, mode, clients in TARGET_CELLS:
        cell = find_cell(doc, script, mode, clients)
        if cell is None or "pgdog-ev" not in cell.get("ratios", {}):
            continue
        r = cell["ratios"]["pgdog-ev"]
        where = f"{cell_label(cell)}, {clients} clients"
        note = REFERENCE_FOOTNOTE if "pgbouncer" in cell.get("substitutes", {}) else ""
        tps = r["tps_vs_pgbouncer"]
        add("TPS pgdog-ev / PgBouncer", where, tps, f">= {TPS_VS_PGBOUNCER_MIN:.2f}",
            tps is not None and tps >= TPS_VS_PGBOUNCER_MIN, _fmt_ratio(tps), note,
            noise(cell, "pgdog-ev", "pgbouncer"))
        cpu = r["cpu_vs_pgbouncer"]
        add("proxy CPU/xact pgdog-ev / PgBouncer", where, cpu, f"<= {CPU_VS_PGBOUNCER_MAX:.2f}",
            cpu is not None and cpu <= CPU_VS_PGBOUNCER_MAX, _fmt_ratio(cpu), note)
    for name, label in SPLIT_TARGETS:
        for cell in doc.get("cells", []):
            where = f"{cell_label(cell)}, {cell['clients']} clients"
            split = cell.get("ratios", {}).get(name)
            if split is not None:
                v = split["tps_vs_pgbouncer"]
                note = REFERENCE_FOOTNOTE if "pgbouncer" in cell.get("substitutes", {}) else ""
                add(label, where, v, f">= {SPLIT_VS_PGBOUNCER_MIN:.2f}",
                    v is not None and v >= SPLIT_VS_PGBOUNCER_MIN, _fmt_ratio(v), note,
                    noise(cell, name, "pgbouncer"))
    for cell in doc.get("cells", []):
        med = cell.get("median", {})
        if "pgdog-ev-nolog" not in med:
            continue
        on, off = med.get("pgdog-ev", {}).get("tps"), med["pgdog-ev-nolog"].get("tps")
        cost = 1 - on / off if on is not None and off else None
        add("event log cost (TPS on vs off)", f"{cell_label(cell)}, {cell['clients']} clients", cost,
            f"<= {EVENT_LOG_COST_MAX:.0%}", cost is not None and cost <= EVENT_LOG_COST_MAX,
            "—" if cost is None else f"{cost:+.1%}", noise=noise(cell, "pgdog-ev", "pgdog-ev-nolog"))
    for entry in doc.get("idle_rss", []):
        if entry["proxy"] != "pgdog-ev":
            continue
        v = entry.get("bytes_per_client")
        add("RSS per idle client", f"pgdog-ev, {entry['clients']:,} clients", v, f"<= {RSS_PER_CLIENT_MAX:,} B",
            v is not None and v <= RSS_PER_CLIENT_MAX, "—" if v is None else f"{v:,.0f} B")
    big = [e for e in doc.get("idle_rss", []) if e["proxy"] == "pgdog-ev" and e["clients"] >= IDLE_CLIENTS_GOAL]
    if big:
        e = big[0]
        ok = e["logged_in"] == e["clients"] and e["dropped"] == 0 and e["processes"] == 1
        add(f"{IDLE_CLIENTS_GOAL:,} idle clients in one process", "pgdog-ev", float(e["logged_in"]), "all, 1 process",
            ok, f"{e['logged_in']:,} logged in, {e['dropped']} dropped, {e['processes']} process(es)")
    else:
        checks.append({"target": f"{IDLE_CLIENTS_GOAL:,} idle clients in one process", "where": "pgdog-ev",
                       "value": None, "shown": "not run in this profile", "limit": "all, 1 process",
                       "result": "N/A", "note": ""})
    return checks


# --------------------------------------------------------------------------- Markdown


def _fmt_ratio(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f}x"


def _fmt(v: float | None, digits: int = 0, thousands: bool = True) -> str:
    if v is None:
        return "—"
    return f"{v:,.{digits}f}" if thousands else f"{v:.{digits}f}"


def _table(head: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    """A Markdown table; `align` is one letter per column (l or r), default left then right."""
    align = align or "l" * 3 + "r" * (len(head) - 3)
    sep = ["---:" if a == "r" else "---" for a in align]
    return [f"| {' | '.join(head)} |", f"|{'|'.join(sep)}|", *(f"| {' | '.join(r)} |" for r in rows)]


def markdown(doc: dict[str, Any]) -> str:
    """The whole report: run facts, the pgbench table, idle-client memory, sim speed, targets."""
    a, m = doc["args"], doc["machine"]
    labels: dict[str, str] = {name: t["label"] for name, t in doc["targets"].items()}
    out = [
        f"# pgdog-ev benchmark {doc['name']}",
        "",
        f"{doc['started']} · profile `{a['profile']}` · commit `{m['git_commit']}` · {m['cpu_count']} cores "
        f"({m['cpu_model']}) · Linux {m['kernel']} · {m['postgres']} · {m['pgbouncer']} · Python {m['python']}"
        f" · load average at start {m['loadavg']}",
        "",
        f"pgbench, median of {a['rounds']} interleaved round(s) of {a['seconds']} s per cell (direct, PgBouncer, "
        f"pgdog-ev, ... in turn), scale {a['scale']}, pool size {a['pool_size']} in both proxies, transaction "
        f"mode, `-j min(clients, 2)`. ±: half the min-max TPS range over the rounds. Latency from pgbench's "
        f"per-transaction log (sampling rate {a['sampling_rate']}). Proxy CPU: utime+stime of the proxy's "
        "processes over the run / transactions (the clients' logins included).",
        "",
    ]
    rows: list[list[str]] = []
    footnote = False
    for cell in doc.get("cells", []):
        substitutes = cell.get("substitutes", {})
        unsupported = cell.get("unsupported", {})
        for name in cell["targets"]:
            if name in unsupported:
                rows.append([cell_label(cell), str(cell["clients"]), f"{labels.get(name, name)} -M {cell['mode']}",
                             "unsupported", "", "", "", "", "", "", ""])
            med = cell["median"].get(name, {})
            label = labels.get(name, name)
            if name in substitutes:
                label += f" (-M {substitutes[name]})†"
            r = cell.get("ratios", {}).get(name, {})
            dagger = "†" if r and "pgbouncer" in substitutes else ""
            footnote = footnote or bool(dagger)
            tps = "error" if med.get("tps") is None else _fmt(med["tps"])
            rows.append([
                cell_label(cell), str(cell["clients"]), label, tps,
                "—" if med.get("tps_spread_pct") is None else f"{med['tps_spread_pct']:.0f}%",
                _fmt(med.get("avg_ms"), 2), _fmt(med.get("p99_ms"), 2), _fmt(med.get("cpu_us_per_xact"), 1),
                _fmt_ratio(r.get("tps_vs_pgbouncer")) + (dagger if r.get("tps_vs_pgbouncer") else "") if r else "",
                _fmt_ratio(r.get("tps_vs_direct")) if r else "",
                _fmt_ratio(r.get("cpu_vs_pgbouncer")) + (dagger if r.get("cpu_vs_pgbouncer") else "") if r else "",
            ])  # fmt: skip
    out += _table(["workload", "clients", "target", "TPS", "±", "avg ms", "p99 ms", "proxy CPU µs/xact",
                   "TPS vs PgBouncer", "TPS vs direct", "CPU vs PgBouncer"], rows)
    if footnote:
        reasons = sorted({reason for c in doc.get("cells", []) for reason in c.get("unsupported", {}).values()})
        out += ["", f"† {REFERENCE_FOOTNOTE}; PgBouncer -M prepared fails with: {'; '.join(reasons)}"]
    errors = [(c, n, med["error"]) for c in doc.get("cells", []) for n, med in c["median"].items() if med.get("error")]
    if errors:
        out += ["", "Failed rounds:"]
        out += [f"- {cell_label(c)}, {c['clients']} clients, {labels.get(n, n)}: {e}" for c, n, e in errors]
    if doc.get("skipped_targets"):
        out += ["", "Not measured:"]
        out += [f"- {labels.get(n, n)}: {why}" for n, why in doc["skipped_targets"].items()]

    if doc.get("idle_rss"):
        out += ["", "## Memory per idle client", "",
                "Clients log in (md5) and then sit idle; RSS of the proxy's processes before and after."]
        out.append("")
        out += _table(["proxy", "idle clients", "logged in", "dropped", "processes", "RSS before",
                       "RSS after", "per client", "login time"],
                      [[e["proxy"], f"{e['clients']:,}", f"{e['logged_in']:,}", str(e["dropped"]), str(e["processes"]),
                        _mib(e.get("rss_before")), _mib(e.get("rss_after")),
                        "—" if e.get("bytes_per_client") is None else f"{e['bytes_per_client']:,.0f} B",
                        f"{e['login_seconds']:.1f} s"] for e in doc["idle_rss"]], align="lrrrrrrrr")  # fmt: skip
        for e in doc["idle_rss"]:
            if e.get("errors"):
                out.append(f"\n{e['proxy']}, {e['clients']:,} clients, login errors: {'; '.join(e['errors'])}")

    sim = doc.get("sim")
    out += ["", "## Simulator speed", ""]
    if sim and sim.get("table"):
        out += [f"`make sim` with {sim['seeds']} seed(s) per scenario (PYTHONHASHSEED=0), "
                f"{sim['wall_seconds']:.0f} s of wall time:", "", sim["table"]]
    else:
        out.append((sim or {}).get("note", "not run"))

    out += ["", "## Targets", "",
            "TPS noise: the larger ± of the two targets compared. A verdict closer to its limit than that is "
            "not conclusive: run again on a quiet machine.", ""]
    out += _table(["target", "where", "measured", "limit", "TPS noise", "result"],
                  [[c["target"] + (" †" if c["note"] else ""), c["where"], c["shown"], c["limit"],
                    "" if c.get("noise_pct") is None else f"±{c['noise_pct']:.0f}%",
                    f"**{c['result']}**"] for c in doc.get("target_checks", [])], align="llrlrl")  # fmt: skip
    if any(c["note"] for c in doc.get("target_checks", [])):
        out += ["", f"† {REFERENCE_FOOTNOTE}."]
    if doc.get("notes"):
        out += ["", "Notes:", *(f"- {n}" for n in doc["notes"])]
    return "\n".join(out) + "\n"


def _mib(v: float | None) -> str:
    return "—" if v is None else f"{v / 2**20:.1f} MiB"


# --------------------------------------------------------------------------- chart


def chart(doc: dict[str, Any], path: str) -> str | None:
    """Bar charts of TPS and proxy CPU per transaction per cell; returns why not if it cannot draw."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no chart: matplotlib is not installed (pip install -e '.[bench]')"
    cells = doc.get("cells", [])
    if not cells:
        return "no chart: no cells were run"
    names: list[str] = []
    for cell in cells:
        names += [n for n in cell["targets"] if n not in names]
    labels = {n: doc["targets"].get(n, {}).get("label", n) for n in names}
    # One colour per target in both panels (direct has no proxy CPU, so the panels' bar sets differ).
    colours = {n: plt.get_cmap("tab10")(i % 10) for i, n in enumerate(names)}
    xs = list(range(len(cells)))
    width = 0.8 / max(len(names), 1)
    fig, (ax_tps, ax_cpu) = plt.subplots(2, 1, figsize=(max(8, 1.1 * len(cells) + 3), 8.5), sharex=True)
    for i, name in enumerate(names):
        offs = [x - 0.4 + width * (i + 0.5) for x in xs]
        # A PgBouncer bar that stands in with -M extended for an unsupported -M prepared is hatched.
        hatches = ["//" if name in c.get("substitutes", {}) else "" for c in cells]
        tps = [c["median"].get(name, {}).get("tps") or 0 for c in cells]
        cpu = [c["median"].get(name, {}).get("cpu_us_per_xact") or 0 for c in cells]
        ax_tps.bar(offs, tps, width, label=labels[name], color=colours[name], hatch=hatches)
        if name != "direct":
            ax_cpu.bar(offs, cpu, width, color=colours[name], hatch=hatches)
    ax_tps.set_ylabel("TPS (median)")
    ax_cpu.set_ylabel("proxy CPU µs / transaction")
    ax_cpu.set_xticks(xs, [f"{cell_label(c)}\n{c['clients']} clients" for c in cells], fontsize=8)
    for ax in (ax_tps, ax_cpu):
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    fig.suptitle(f"pgdog-ev benchmark {doc['name']} ({doc['args']['profile']}, commit {doc['machine']['git_commit']})")
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.955), ncols=min(len(names), 4), fontsize=8, frameon=False)
    if any(c.get("substitutes") for c in cells):
        fig.text(0.01, 0.005, "hatched: PgBouncer with -M extended where -M prepared is unsupported", fontsize=7)
    fig.tight_layout(rect=(0, 0.02, 1, 0.92))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def main() -> None:
    """Redo the Markdown and the chart from a results file (the JSON itself is left as it was)."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("results", help="bench/results/<name>.json")
    args = ap.parse_args()
    with open(args.results) as f:
        doc = json.load(f)
    # Medians, ratios and verdicts again from the raw rounds, so a change to how they are
    # computed applies to old results too.
    kinds = {name: t["kind"] for name, t in doc["targets"].items()}
    for cell in doc.get("cells", []):
        summarize_cell(cell, kinds)
    doc["target_checks"] = evaluate_targets(doc)
    base = os.path.splitext(args.results)[0]
    with open(base + ".md", "w") as f:
        f.write(markdown(doc))
    why = chart(doc, base + ".png")
    print(why or f"wrote {base}.md and {base}.png")


if __name__ == "__main__":
    main()
