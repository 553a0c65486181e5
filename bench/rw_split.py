"""What read/write splitting costs: pgbench -S through the proxy with and without a replica.

Starts a primary (pgbench -i) and one streaming replica, then two proxies side by side: one with
only the primary configured (no routing: the single-host fast path) and one with the primary and
the replica (every query classified and routed). pgbench -S runs against direct, proxy-single and
proxy-split, interleaved (A B C A B C ...), for each protocol mode; the table gives median TPS and
the ratio split/single. With -M simple every query text carries a different literal (aid), so the
simple rows are also the "cache-miss storm" of unique literals the classifier must survive
without a full parse per query.

    python bench/rw_split.py [--seconds 8] [--rounds 3] [--clients 8] [--modes simple,extended,prepared]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.harness.pgbench import pgbench_env
from tests.harness.pgserver import PgServer, find_bindir
from tests.harness.proxy import ProxyProcess

USER, PASSWORD, DB = "app", "app_pw", "app"
FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "shared_buffers": "128MB"}


def pgbench(port: int, args: list[str], timeout: float) -> str:
    res = subprocess.run(
        [os.path.join(find_bindir(), "pgbench"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, *args, DB],
        capture_output=True, text=True, timeout=timeout, env=pgbench_env(PASSWORD), stdin=subprocess.DEVNULL,
    )
    if res.returncode != 0:
        raise SystemExit(f"pgbench {' '.join(args)} on port {port} failed:\n{res.stdout}{res.stderr}")
    return res.stdout


def tps(output: str) -> float:
    match = re.search(r"tps = ([0-9.]+) \(without initial connection time\)", output)
    if match is None:
        raise SystemExit(f"no tps in pgbench output:\n{output}")
    return float(match.group(1))


def cpu_seconds(pid: int | None) -> float:
    """utime + stime of a process, from /proc (0 for direct runs)."""
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proxy(databases: list[dict], pool_size: int) -> ProxyProcess:
    p = ProxyProcess(
        general={"default_pool_size": pool_size, "pooler_mode": "transaction", "read_write_split": "include_primary"},
        databases=databases,
        users=[{"name": USER, "database": DB, "password": PASSWORD}],
    )
    p.start()
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--scale", type=int, default=5)
    ap.add_argument("--modes", default="simple,extended,prepared")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    primary = PgServer(name="bench-primary", settings=FAST)
    replica = None
    proxies: list[ProxyProcess] = []
    try:
        primary.start()
        primary.create_user(USER, PASSWORD)
        primary.create_database(DB, owner=USER)
        pgbench(primary.port, ["-i", "-q", "-s", str(args.scale)], timeout=600)
        replica = primary.make_replica("bench-replica")
        replica.wait_for_replication()
        entry = {"name": DB, "database_name": DB, "host": "127.0.0.1"}
        single = proxy([{**entry, "port": primary.port, "role": "primary"}], args.clients)
        split = proxy([{**entry, "port": primary.port, "role": "primary"},
                       {**entry, "port": replica.port, "role": "replica"}], args.clients)
        proxies = [single, split]
        targets = {"direct": primary.port, "proxy-single": single.port, "proxy-split": split.port}
        pids = {"direct": None, "proxy-single": single.pid, "proxy-split": split.pid}
        results: dict[str, dict[str, list[float]]] = {}
        cpu: dict[str, dict[str, list[float]]] = {}
        for mode in args.modes.split(","):
            cells = results.setdefault(mode, {name: [] for name in targets})
            cpu_cells = cpu.setdefault(mode, {name: [] for name in targets})
            for rnd in range(args.rounds):
                for name, port in targets.items():
                    before = cpu_seconds(pids[name])
                    out = pgbench(port, ["-S", "-n", "-M", mode, "-c", str(args.clients), "-j", "2",
                                         "-T", str(args.seconds)], timeout=args.seconds * 4 + 60)
                    cells[name].append(tps(out))
                    transactions = cells[name][-1] * args.seconds
                    cpu_cells[name].append((cpu_seconds(pids[name]) - before) / transactions * 1e6)
                    print(f"{mode:9} round {rnd + 1} {name:13} {cells[name][-1]:10.0f} tps "
                          f"{cpu_cells[name][-1]:6.1f} proxy CPU us/xact", flush=True)
        print()
        print(f"pgbench -S -c {args.clients} -j 2 -T {args.seconds}, {args.rounds} interleaved rounds, median TPS")
        print(f"{'mode':10} {'direct':>10} {'single':>10} {'split':>10} {'split/single':>13} {'single/direct':>14} "
              f"{'CPU us/xact single':>19} {'split':>7}")
        summary = {}
        for mode, cells in results.items():
            med = {name: statistics.median(values) for name, values in cells.items()}
            cpu_med = {name: statistics.median(values) for name, values in cpu[mode].items()}
            summary[mode] = {**med, "split/single": med["proxy-split"] / med["proxy-single"],
                             "cpu_us_single": cpu_med["proxy-single"], "cpu_us_split": cpu_med["proxy-split"]}
            print(f"{mode:10} {med['direct']:10.0f} {med['proxy-single']:10.0f} {med['proxy-split']:10.0f} "
                  f"{med['proxy-split'] / med['proxy-single']:13.3f} {med['proxy-single'] / med['direct']:14.3f} "
                  f"{cpu_med['proxy-single']:19.1f} {cpu_med['proxy-split']:7.1f}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "args": vars(args), "raw": results, "cpu_us_per_xact": cpu,
                           "median": summary}, f, indent=2)
    finally:
        for p in proxies:
            p.cleanup()
        if replica is not None:
            replica.cleanup()
        primary.cleanup()


if __name__ == "__main__":
    main()
