"""`make bench` / `make bench-quick`: pgdog-ev against PgBouncer and against PostgreSQL directly.

    python -m bench [--profile full|quick|tiny] [--seconds N] [--rounds N] [--cells LIST]
                    [--variants LIST] [--rss-clients 1000,10000] [--sim-seeds N] [--out-dir DIR]

One benchmark PostgreSQL (fsync and synchronous_commit off, `pgbench -i -s SCALE`), a streaming
replica when a variant needs one, PgBouncer and the pgdog-ev variants in transaction mode with the
same pool size. Each cell (workload x protocol x clients) runs every target in turn, round after
round (A B C A B C ...), so slow drifts of a shared, noisy machine hit all targets alike; the
tables give medians. Then the memory of each proxy holding many idle clients, the simulator's
speed, and the targets' verdicts. Results: OUT_DIR/NAME.json (everything, raw rounds included),
NAME.md (printed at the end too) and NAME.png.

Profiles: `full` (about 35-45 minutes on 2 cores), `quick` (about 2-3 minutes: the cells the
targets care most about, short runs) and `tiny` (seconds; only for the harness's own test).
Every profile setting can be overridden on the command line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# `python bench/run.py` works too, not only `python -m bench` from the repository root.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import report
from bench.idle import open_idle, raise_fd_limit
from bench.pgbench_run import RunResult, run_pgbench
from bench.pgbouncer import PgBouncer, find_pgbouncer, pgbouncer_version
from bench.procstat import open_files_limit, process_tree, tree_rss_bytes
from tests.harness.pgserver import PgServer, find_bindir
from tests.harness.ports import free_port, wait_for_port
from tests.harness.proxy import ProxyError, ProxyProcess

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
USER, PASSWORD, DB = "app", "app_pw", "app"
RESULTS_DIR = os.path.join(REPO_ROOT, "bench", "results")


# --------------------------------------------------------------------------- cells and variants


@dataclass(frozen=True)
class Cell:
    """One pgbench workload: `script` "select" (-S) or "tpcb" (the default TPC-B-like script)."""

    script: str
    mode: str
    clients: int

    @property
    def id(self) -> str:
        return f"S-{self.mode}-{self.clients}" if self.script == "select" else f"tpcb-{self.clients}"

    def args(self, mode: str | None = None) -> list[str]:
        """pgbench arguments; `mode` replaces the cell's -M (PgBouncer's stand-in for prepared)."""
        script = ["-S"] if self.script == "select" else []
        return [*script, "-M", mode or self.mode, "-c", str(self.clients), "-j", str(min(self.clients, 2))]


def parse_cells(spec: str) -> list[Cell]:
    """'S-simple-16,S-prepared-64,tpcb-16' -> cells."""
    cells = []
    for token in filter(None, (t.strip() for t in spec.split(","))):
        if m := re.fullmatch(r"S-(simple|extended|prepared)-(\d+)", token):
            cells.append(Cell("select", m.group(1), int(m.group(2))))
        elif m := re.fullmatch(r"tpcb-(\d+)", token):
            cells.append(Cell("tpcb", "simple", int(m.group(1))))
        else:
            raise SystemExit(f"bad cell {token!r}: use S-<simple|extended|prepared>-<clients> or tpcb-<clients>")
    return cells


def _nolog_cells(c: Cell) -> bool:
    """The event log's cost is measured where the proxy does the least else per transaction."""
    return c.script == "select" and c.mode in ("simple", "extended") and c.clients == 16


def _split_cells(c: Cell) -> bool:
    return (c.script == "select" and c.clients in (16, 64)) or (c.script == "tpcb" and c.clients == 16)


@dataclass(frozen=True)
class Variant:
    """A pgdog-ev configuration to measure: extra `[general]` settings, with or without the replica.

    `replica_on_primary`: the replica entry names the primary's own server. Every query is still
    classified and routed over two pools, but one PostgreSQL serves them, so the cell measures
    what the split costs the proxy apart from what a second PostgreSQL on the same cores costs.

    `min_processes`: a variant that starts but runs fewer processes than this (a setting accepted
    but not acted on yet) is skipped with a note instead of measuring the default twice.
    """

    name: str
    label: str
    general: dict[str, Any] = field(default_factory=dict)
    replica: bool = False
    replica_on_primary: bool = False
    min_processes: int = 1
    cells: Callable[[Cell], bool] = lambda _cell: True


# Base pgdog-ev pins workers = 1: one process, like PgBouncer, whatever the default becomes.
VARIANTS: tuple[Variant, ...] = (
    Variant("pgdog-ev", "pgdog-ev", {"workers": 1}),
    Variant("pgdog-ev-nolog", "pgdog-ev, event log off", {"workers": 1, "event_log": ""}, cells=_nolog_cells),
    Variant("pgdog-ev-split", "pgdog-ev, r/w split", {"workers": 1}, replica=True, cells=_split_cells),
    Variant("pgdog-ev-split-self", "pgdog-ev, r/w split, replica entry on the primary", {"workers": 1},
            replica_on_primary=True, cells=_split_cells),
    Variant("pgdog-ev-workers2", "pgdog-ev, workers = 2", {"workers": 2}, min_processes=2),
)

FULL_CELLS = (
    [Cell("select", mode, c) for mode in ("simple", "extended", "prepared") for c in (1, 16, 64, 256)]
    + [Cell("tpcb", "simple", c) for c in (16, 64)]
)

PROFILES: dict[str, dict[str, Any]] = {
    "full": {
        "seconds": 10, "rounds": 3, "scale": 10, "pool_size": 16, "cells": ",".join(c.id for c in FULL_CELLS),
        "variants": ",".join(v.name for v in VARIANTS), "rss_clients": "1000,10000", "sim_seeds": 3,
        "warmup": 3, "sampling_rate": 0.2, "probe_seconds": 2,
        "relay_cells": "S-simple-16,S-extended-16,S-prepared-16,tpcb-16",
    },
    "quick": {
        "seconds": 4, "rounds": 3, "scale": 10, "pool_size": 16, "cells": "S-simple-16,S-extended-16,tpcb-16",
        "variants": "pgdog-ev,pgdog-ev-nolog", "rss_clients": "1000", "sim_seeds": 0, "warmup": 1,
        "sampling_rate": 0.2, "probe_seconds": 1, "relay_cells": "S-simple-16",
    },
    "tiny": {
        "seconds": 2, "rounds": 1, "scale": 1, "pool_size": 4, "cells": "S-simple-16,S-prepared-16",
        "variants": "pgdog-ev,pgdog-ev-nolog,pgdog-ev-split,pgdog-ev-split-self", "rss_clients": "50", "sim_seeds": 0, "warmup": 0,
        "sampling_rate": 1.0, "probe_seconds": 1, "relay_cells": "S-simple-16",
    },
}  # fmt: skip


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    """Something pgbench can be pointed at: PostgreSQL itself or one proxy."""

    name: str
    label: str
    kind: str  # "direct", "pgbouncer" or "pgdog-ev"
    port: int
    cpu_pid: int | None
    info: dict[str, Any] = field(default_factory=dict)


class Bench:
    """One benchmark run: owns every process it starts and stops them all in `close()`."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cells = parse_cells(args.cells)
        names = [n for n in args.variants.split(",") if n]
        unknown = set(names) - {v.name for v in VARIANTS}
        if unknown:
            raise SystemExit(f"unknown variant(s) {sorted(unknown)}; known: {[v.name for v in VARIANTS]}")
        self.variants = [v for v in VARIANTS if v.name in names]
        self.pgbench = os.path.join(find_bindir(), "pgbench")
        self.pgbouncer_bin = find_pgbouncer()
        self.primary: PgServer | None = None
        self.replica: PgServer | None = None
        self.bouncers: list[PgBouncer] = []
        self.proxies: list[ProxyProcess] = []
        self.relay: subprocess.Popen[bytes] | None = None
        self.targets: dict[str, Target] = {}
        self.started = time.time()
        self.doc: dict[str, Any] = {
            "name": args.name, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(self.started)),
            "complete": False, "args": recorded_args(args), "machine": {}, "targets": {}, "skipped_targets": {},
            "cells": [], "idle_rss": [], "sim": None, "notes": [], "timings": {},
        }  # fmt: skip
        self.runs_total = 0
        self.runs_done = 0
        self.runs_started_at = 0.0

    # ------------------------------------------------------------------ setup

    def log(self, text: str) -> None:
        print(f"[bench {time.time() - self.started:6.0f}s] {text}", flush=True)

    def setup(self) -> None:
        a = self.args
        t0 = time.monotonic()
        self.doc["machine"].update(machine_info(self.pgbouncer_bin))
        max_clients = max([c.clients for c in self.cells], default=16)
        settings = {
            "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
            # pgbench -i -s 10 is about 160 MB: all of it in shared buffers, so no target pays for reads.
            "shared_buffers": f"{max(128, 24 * a.scale + 64)}MB",
            # Direct runs at the largest client count plus every proxy's pool (and the replica proxy's).
            "max_connections": str(max(300, max_clients + a.pool_size * (len(self.variants) + 3) + 20)),
        }  # fmt: skip
        self.log(f"starting PostgreSQL ({settings})")
        self.primary = PgServer(name="bench-primary", settings=settings)
        self.primary.start()
        self.primary.create_user(USER, PASSWORD)
        self.primary.create_database(DB, owner=USER)
        self.log(f"pgbench -i -s {a.scale}")
        res = run_pgbench_init(self.pgbench, self.primary.port, a.scale)
        self.doc["timings"]["pgbench_init_s"] = res
        self.targets["direct"] = Target("direct", "direct", "direct", self.primary.port, None)
        if any(v.replica for v in self.variants):
            self.log("creating a streaming replica")
            # The base backup is taken after pgbench -i, so the replica has the tables once it
            # accepts queries; waiting for the primary's insert LSN instead can take until the
            # next standby snapshot record (15 s) on an idle primary.
            self.replica = self.primary.make_replica("bench-replica")
            self.replica.psql("SELECT count(*) FROM pgbench_branches", db=DB)
        if self.pgbouncer_bin is None:
            self.doc["skipped_targets"]["pgbouncer"] = "not installed (`make bench` installs it from Debian packages)"
        else:
            bouncer = PgBouncer(self.pgbouncer_bin, server_port=self.primary.port, dbname=DB,
                                users={USER: PASSWORD}, pool_size=a.pool_size)
            self.bouncers.append(bouncer)
            bouncer.start()
            self.targets["pgbouncer"] = Target("pgbouncer", "PgBouncer", "pgbouncer", bouncer.port, bouncer.pid,
                                               {"version": bouncer.version, "config": "transaction mode, scram"})
        for variant in self.variants:
            self.start_variant(variant)
        if self.args.relay_cells:
            self.start_relay()
        self.doc["targets"] = {n: {"label": t.label, "kind": t.kind, **t.info} for n, t in self.targets.items()}
        self.doc["timings"]["setup_s"] = time.monotonic() - t0

    def start_variant(self, variant: Variant) -> None:
        assert self.primary is not None
        entry = {"name": DB, "database_name": DB, "host": "127.0.0.1"}
        databases = [{**entry, "port": self.primary.port, "role": "primary"}]
        if variant.replica_on_primary:
            databases.append({**entry, "port": self.primary.port, "role": "replica"})
        elif variant.replica:
            assert self.replica is not None
            databases.append({**entry, "port": self.replica.port, "role": "replica"})
        general = {"default_pool_size": self.args.pool_size, "pooler_mode": "transaction", **variant.general}
        proxy = ProxyProcess(general=general, databases=databases,
                             users=[{"name": USER, "database": DB, "password": PASSWORD}])
        self.proxies.append(proxy)
        try:
            proxy.start()
        except ProxyError as e:
            self.doc["skipped_targets"][variant.name] = f"did not start: {_last_line(str(e))}"
            self.log(f"{variant.name}: {self.doc['skipped_targets'][variant.name]}")
            proxy.cleanup()
            return
        assert proxy.pid is not None
        time.sleep(0.5)  # workers, if any, are forked right after the listener opens
        processes = len(process_tree(proxy.pid))
        if processes < variant.min_processes:
            why = (f"started, but runs {processes} process(es) where {variant.min_processes} or more were "
                   f"expected: {variant.general} is accepted but not acted on yet")
            self.doc["skipped_targets"][variant.name] = why
            self.log(f"{variant.name}: {why}")
            proxy.cleanup()
            return
        self.targets[variant.name] = Target(
            variant.name, variant.label, "pgdog-ev", proxy.port, proxy.pid,
            {"general": general, "replica": variant.replica, "replica_on_primary": variant.replica_on_primary,
             "processes": processes},
        )

    def start_relay(self) -> None:
        """bench.relay: the same loop and transports with no PostgreSQL protocol layer (the floor)."""
        assert self.primary is not None
        port = free_port()
        self.relay = subprocess.Popen(
            [sys.executable, "-m", "bench.relay", "--port", str(port), "--server-port", str(self.primary.port)],
            cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
        )
        if not wait_for_port("127.0.0.1", port, timeout=10, proc=self.relay):
            self.doc["skipped_targets"]["relay"] = "bench.relay did not start"
            return
        self.targets["relay"] = Target("relay", "bare relay on our loop", "relay", port, self.relay.pid,
                                       {"what": "bench/relay.py: bytes copied unread, a server connection per client"})

    # ------------------------------------------------------------------ pgbench

    def run(self, target: Target, args: list[str], seconds: int) -> RunResult:
        return run_pgbench(self.pgbench, target.port, user=USER, password=PASSWORD, dbname=DB, args=args,
                           seconds=seconds, sampling_rate=self.args.sampling_rate, cpu_pid=target.cpu_pid)

    def probe_pgbouncer_prepared(self) -> str | None:
        """None if PgBouncer runs `pgbench -M prepared` in transaction mode, else why not.

        Tried rather than decided from the version, so a PgBouncer that has the feature is
        measured for real. With more clients than servers, so that clients must share servers:
        with fewer, each may keep finding its own server and a PgBouncer without the feature
        passes the probe, only to fail in the cells.
        """
        target = self.targets["pgbouncer"]
        clients = str(2 * self.args.pool_size + 1)
        res = self.run(target, ["-S", "-M", "prepared", "-c", clients, "-j", "2"], self.args.probe_seconds)
        self.doc["pgbouncer_prepared_probe"] = res.as_dict()
        if res.ok and not res.failed:
            return None
        return res.error or f"{res.failed} failed transactions"

    def warm_up(self) -> None:
        """A few seconds of -S per target so caches and pools are warm before anything counts."""
        if not self.args.warmup:
            return
        self.log(f"warming up ({self.args.warmup} s per target)")
        for target in self.targets.values():
            res = self.run(target, ["-S", "-M", "simple", "-c", "8", "-j", "2"], self.args.warmup)
            if not res.ok:
                self.doc["notes"].append(f"warm-up through {target.label} failed: {res.error}")

    def plan(self) -> list[tuple[Cell, list[Target], dict[str, str], dict[str, str]]]:
        """For each cell: its targets in run order, the -M substitutions and the unsupported ones."""
        bouncer_prepared: str | None = None
        if "pgbouncer" in self.targets and any(c.mode == "prepared" for c in self.cells):
            bouncer_prepared = self.probe_pgbouncer_prepared()
            self.log("PgBouncer -M prepared: " + ("works" if bouncer_prepared is None else bouncer_prepared))
        out = []
        for cell in self.cells:
            targets = [self.targets["direct"]]
            substitutes: dict[str, str] = {}
            unsupported: dict[str, str] = {}
            if "pgbouncer" in self.targets:
                targets.append(self.targets["pgbouncer"])
                if cell.mode == "prepared" and bouncer_prepared is not None:
                    substitutes["pgbouncer"] = "extended"
                    unsupported["pgbouncer"] = bouncer_prepared
            targets += [self.targets[v.name] for v in self.variants if v.name in self.targets and v.cells(cell)]
            if "relay" in self.targets and cell.id in self.args.relay_cells.split(","):
                targets.append(self.targets["relay"])
            out.append((cell, targets, substitutes, unsupported))
        return out

    def run_cells(self) -> None:
        plan = self.plan()
        self.runs_total = sum(len(targets) for _, targets, _, _ in plan) * self.args.rounds
        self.runs_started_at = time.monotonic()
        kinds = {n: t.kind for n, t in self.targets.items()}
        for cell, targets, substitutes, unsupported in plan:
            if cell.script == "tpcb":
                self.reset_tpcb()
            record: dict[str, Any] = {
                "id": cell.id, "script": cell.script, "mode": cell.mode, "clients": cell.clients,
                "threads": min(cell.clients, 2), "targets": [t.name for t in targets],
                "substitutes": substitutes, "unsupported": unsupported, "rounds": {t.name: [] for t in targets},
            }  # fmt: skip
            self.doc["cells"].append(record)
            for rnd in range(self.args.rounds):
                for target in targets:
                    res = self.run(target, cell.args(substitutes.get(target.name)), self.args.seconds)
                    record["rounds"][target.name].append(res.as_dict())
                    self.runs_done += 1
                    self.progress(cell, rnd, target, res)
            report.summarize_cell(record, kinds)

    def progress(self, cell: Cell, rnd: int, target: Target, res: RunResult) -> None:
        elapsed = time.monotonic() - self.runs_started_at
        eta = elapsed / self.runs_done * (self.runs_total - self.runs_done)
        what = (f"{res.tps:9,.0f} tps  avg {res.avg_ms or 0:6.2f} ms  p99 {res.p99_ms or 0:6.2f} ms"
                + (f"  {res.cpu_us_per_xact:6.1f} µs/xact" if res.cpu_us_per_xact is not None else "")
                if res.ok else f"error: {res.error}")  # fmt: skip
        self.log(f"[{self.runs_done}/{self.runs_total} eta {eta / 60:4.1f} min] {cell.id:<14} "
                 f"round {rnd + 1}/{self.args.rounds} {target.name:<18} {what}")

    def reset_tpcb(self) -> None:
        """TPC-B appends to pgbench_history and updates the same rows all along: every TPC-B cell
        starts from the same, vacuumed state (what pgbench does itself without -n)."""
        assert self.primary is not None
        self.primary.psql("TRUNCATE pgbench_history; VACUUM ANALYZE pgbench_branches, pgbench_tellers, "
                          "pgbench_accounts;", db=DB, timeout=600)

    # ------------------------------------------------------------------ idle clients

    def run_idle_rss(self) -> None:
        for count in [int(n) for n in self.args.rss_clients.split(",") if n]:
            if self.pgbouncer_bin is not None:
                self.doc["idle_rss"].append(self.idle_rss_pgbouncer(count))
            self.doc["idle_rss"].append(self.idle_rss_pgdog(count))

    def idle_rss_pgbouncer(self, count: int) -> dict[str, Any]:
        assert self.primary is not None and self.pgbouncer_bin is not None
        bouncer = PgBouncer(self.pgbouncer_bin, server_port=self.primary.port, dbname=DB, users={USER: PASSWORD},
                            pool_size=self.args.pool_size, auth_type="md5", max_client_conn=count + 100)
        self.bouncers.append(bouncer)
        try:
            bouncer.start()
            assert bouncer.pid is not None
            return self.idle_rss("pgbouncer", bouncer.port, bouncer.pid, count)
        finally:
            bouncer.cleanup()

    def idle_rss_pgdog(self, count: int) -> dict[str, Any]:
        assert self.primary is not None
        proxy = ProxyProcess(
            general={"default_pool_size": self.args.pool_size, "pooler_mode": "transaction", "workers": 1,
                     "auth_type": "md5"},
            databases=[{"name": DB, "database_name": DB, "host": "127.0.0.1", "port": self.primary.port}],
            users=[{"name": USER, "database": DB, "password": PASSWORD}],
        )  # fmt: skip
        self.proxies.append(proxy)
        try:
            proxy.start()
            assert proxy.pid is not None
            return self.idle_rss("pgdog-ev", proxy.port, proxy.pid, count)
        finally:
            proxy.cleanup()

    def idle_rss(self, name: str, port: int, pid: int, count: int) -> dict[str, Any]:
        """RSS before and after `count` clients log in and sit idle; bytes per client from the difference."""
        warm = open_idle("127.0.0.1", port, user=USER, password=PASSWORD, database=DB, count=1)
        if warm.failed:
            warm.close()
            return {"proxy": name, "clients": count, "logged_in": 0, "dropped": 0, "processes": 0,
                    "rss_before": None, "rss_after": None, "bytes_per_client": None, "login_seconds": 0.0,
                    "errors": warm.errors}  # fmt: skip
        warm.close()
        time.sleep(0.5)
        before = tree_rss_bytes(pid)
        idle = open_idle("127.0.0.1", port, user=USER, password=PASSWORD, database=DB, count=count)
        try:
            time.sleep(1.0)
            after = tree_rss_bytes(pid)
            entry = {
                "proxy": name, "clients": count, "logged_in": idle.logged_in, "failed": idle.failed,
                "dropped": idle.dropped(), "processes": len(process_tree(pid)), "rss_before": before,
                "rss_after": after,
                "bytes_per_client": (after - before) / idle.logged_in if idle.logged_in else None,
                "login_seconds": idle.seconds, "errors": idle.errors, "fd_limit": open_files_limit(pid),
            }  # fmt: skip
        finally:
            idle.close()
        self.log(f"idle clients through {name}: {entry['logged_in']}/{count} logged in in {idle.seconds:.1f} s, "
                 f"RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB"
                 + (f" ({entry['bytes_per_client']:,.0f} B per client)" if entry["bytes_per_client"] else ""))
        return entry

    # ------------------------------------------------------------------ simulator

    def run_sim(self) -> None:
        seeds = self.args.sim_seeds
        if not seeds:
            self.doc["sim"] = {"note": "not run in this profile (`make sim` measures it; --sim-seeds N here)"}
            return
        self.log(f"simulator: every scenario, {seeds} seed(s)")
        started = time.monotonic()
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        proc = subprocess.run(
            [sys.executable, "-m", "pgdog_ev", "sim", "--all", "--jobs", str(os.cpu_count() or 2), "--seeds",
             str(seeds)], capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=3600,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        wall = time.monotonic() - started
        table = "\n".join(ln for ln in proc.stdout.splitlines() if ln.startswith("|"))
        rows = []
        for line in table.splitlines()[2:]:
            cols = [c.strip().strip("*") for c in line.strip("|").split("|")]
            with contextlib.suppress(ValueError, IndexError):
                rows.append({"scenario": cols[0], "seeds": int(cols[1]), "simulated_s": float(cols[2].split()[0]),
                             "wall_s": float(cols[3].split()[0]), "sim_per_real": float(cols[4].rstrip("x")),
                             "failures": cols[5]})  # fmt: skip
        self.doc["sim"] = {"seeds": seeds, "wall_seconds": wall, "exit_code": proc.returncode, "rows": rows,
                           "table": table}
        if proc.returncode != 0:
            self.doc["notes"].append(f"`pgdog-ev sim` exited {proc.returncode}: {_last_line(proc.stderr)}")

    # ------------------------------------------------------------------ teardown and output

    def close(self) -> None:
        if self.relay is not None:
            self.relay.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.relay.wait(timeout=10)
            if self.relay.poll() is None:
                self.relay.kill()
        for proxy in self.proxies:
            with contextlib.suppress(Exception):
                proxy.cleanup()
        for bouncer in self.bouncers:
            with contextlib.suppress(Exception):
                bouncer.cleanup()
        for server in (self.replica, self.primary):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.cleanup()

    def write(self) -> dict[str, str]:
        """JSON, Markdown and PNG into the output directory; returns their paths."""
        kinds = {n: t.kind for n, t in self.targets.items()}
        for cell in self.doc["cells"]:
            if "median" not in cell:  # the cell a stop interrupted: what its finished rounds say
                report.summarize_cell(cell, kinds)
        self.doc["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        self.doc["duration_s"] = time.time() - self.started
        self.doc["target_checks"] = report.evaluate_targets(self.doc)
        os.makedirs(self.args.out_dir, exist_ok=True)
        name = self.args.name if self.doc["complete"] else self.args.name + "-incomplete"
        if not self.args.named:
            name = unused_name(self.args.out_dir, name)
        self.doc["name"] = name
        base = os.path.join(self.args.out_dir, name)
        paths = {"json": base + ".json", "md": base + ".md", "png": base + ".png"}
        why = report.chart(self.doc, paths["png"])
        if why:
            self.doc["notes"].append(why)
            del paths["png"]
        self.doc["chart"] = os.path.basename(paths["png"]) if "png" in paths else None
        with open(paths["json"], "w") as f:
            json.dump(self.doc, f, indent=1)
            f.write("\n")
        with open(paths["md"], "w") as f:
            f.write(report.markdown(self.doc))
        return paths


def run_pgbench_init(pgbench: str, port: int, scale: int) -> float:
    """pgbench -i, directly on PostgreSQL; returns the seconds it took."""
    from tests.harness.pgbench import pgbench_env

    started = time.monotonic()
    res = subprocess.run(
        [pgbench, "-h", "127.0.0.1", "-p", str(port), "-U", USER, "-i", "-q", "-s", str(scale), DB],
        capture_output=True, text=True, timeout=1200, env=pgbench_env(PASSWORD), stdin=subprocess.DEVNULL,
    )
    if res.returncode != 0:
        raise RuntimeError(f"pgbench -i failed:\n{res.stdout}{res.stderr}")
    return time.monotonic() - started


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else text.strip()


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20, cwd=REPO_ROOT).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.strip().splitlines()[0] if out.strip() else "unknown"


def machine_info(pgbouncer_bin: str | None) -> dict[str, Any]:
    """What a reader needs to compare two results files: hardware, software versions, commit."""
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    return {
        "cpu_count": os.cpu_count(), "cpu_model": model, "memory_bytes": mem, "kernel": platform.release(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "postgres": _first_line([os.path.join(find_bindir(), "postgres"), "--version"]),
        "pgbench": _first_line([os.path.join(find_bindir(), "pgbench"), "--version"]),
        "pgbouncer": pgbouncer_version(pgbouncer_bin) if pgbouncer_bin else "not installed",
        "git_commit": _first_line(["git", "describe", "--always", "--dirty", "--abbrev=10"]),
    }  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--profile", choices=sorted(PROFILES), default="full")
    ap.add_argument("--seconds", type=int, help="pgbench -T per round")
    ap.add_argument("--rounds", type=int, help="interleaved rounds per cell (the tables show medians)")
    ap.add_argument("--scale", type=int, help="pgbench -i -s")
    ap.add_argument("--pool-size", type=int, help="server connections per pool, in both proxies")
    ap.add_argument("--cells", help="e.g. S-simple-16,S-prepared-64,tpcb-16")
    ap.add_argument("--variants", help=f"pgdog-ev variants: {','.join(v.name for v in VARIANTS)}")
    ap.add_argument("--rss-clients", help="idle-client counts for the memory test, e.g. 1000,10000 ('' skips)")
    ap.add_argument("--sim-seeds", type=int, help="seeds per simulator scenario (0 skips)")
    ap.add_argument("--warmup", type=int, help="seconds of warm-up per target")
    ap.add_argument("--sampling-rate", type=float, help="pgbench --sampling-rate of the latency log")
    ap.add_argument("--probe-seconds", type=int, help="length of the PgBouncer -M prepared probe")
    ap.add_argument("--relay-cells", help="cells where the bare relay (bench/relay.py) runs too ('' skips)")
    ap.add_argument("--out-dir", default=RESULTS_DIR, help="where NAME.json/.md/.png go (default bench/results)")
    ap.add_argument("--name", help="file name without extension (default: the date, plus -PROFILE unless "
                    "full, plus -subset with --cells or --variants; never an existing run's name)")
    args = ap.parse_args(argv)
    subset = args.cells is not None or args.variants is not None
    for key, value in PROFILES[args.profile].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.named = args.name is not None
    if args.name is None:
        args.name = default_name(args.profile, subset)
    return args


def recorded_args(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments as the results file keeps them: the output directory relative to the
    repository when inside it, so a committed result names no machine's paths."""
    recorded = dict(vars(args))
    out_dir = os.path.abspath(args.out_dir)
    if os.path.commonpath([out_dir, REPO_ROOT]) == REPO_ROOT:
        recorded["out_dir"] = os.path.relpath(out_dir, REPO_ROOT)
    return recorded


def default_name(profile: str, subset: bool) -> str:
    """Only a whole full run carries the bare date: that is the name of a committed result."""
    return (time.strftime("%Y-%m-%d") + ("" if profile == "full" else f"-{profile}")
            + ("-subset" if subset else ""))


def unused_name(out_dir: str, name: str) -> str:
    """``name``, or ``name-2``, ``name-3``... when a run of that name is already there: a second
    run the same day must not overwrite the first (committed) one."""
    candidate, n = name, 1
    while os.path.exists(os.path.join(out_dir, candidate + ".json")):
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # SIGTERM (a killed make) must unwind through the finally below like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    counts = [int(n) for n in args.rss_clients.split(",") if n]
    fd_limit = raise_fd_limit(max(counts, default=0) + 1024)
    bench = Bench(args)
    bench.doc["machine"]["fd_limit"] = fd_limit
    failure: BaseException | None = None
    try:
        bench.setup()
        bench.warm_up()
        bench.run_cells()
        bench.run_idle_rss()
        bench.run_sim()
        bench.doc["complete"] = True
    except BaseException as e:  # write what was measured, then re-raise
        failure = e
        bench.doc["notes"].append(f"stopped early: {type(e).__name__}: {e}")
    finally:
        bench.close()
    if failure is not None and not bench.doc["cells"]:
        raise failure
    paths = bench.write()
    with open(paths["md"]) as f:
        print("\n" + f.read())
    print("wrote " + ", ".join(paths.values()))
    if failure is not None:
        raise failure


if __name__ == "__main__":
    main()
