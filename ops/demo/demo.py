"""Demo cluster for `make run`: a PostgreSQL primary, one streaming replica, and the proxy in the
foreground, splitting reads and writes between them.

Run from the repo root:
    .venv/bin/python ops/demo/demo.py --data .data [--port 6432] [--pg-port 5433] [--replica-port 5434]

The PostgreSQL clusters live in DATA/pg and DATA/replica and are reused by later runs. Ctrl-C or SIGTERM stops the
proxy, then PostgreSQL (pg_ctl stop -m fast). `--check` starts everything, runs `SELECT 1` through
the proxy, stops everything and exits 0 or 1.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from tests.harness.pgserver import PgServer, PgServerError  # noqa: E402
from tests.harness.ports import wait_for_port  # noqa: E402
from tests.harness.proxy import dump_toml  # noqa: E402

DEMO_USER = DEMO_PASSWORD = DEMO_DB = "demo"


def log(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="Run the pgdog-ev demo cluster (PostgreSQL + proxy).")
    ap.add_argument("--data", default=".data", help="state directory (default: .data)")
    ap.add_argument("--port", type=int, default=6432, help="proxy port (default: 6432)")
    ap.add_argument("--pg-port", type=int, default=5433, help="PostgreSQL port (default: 5433)")
    ap.add_argument("--replica-port", type=int, default=5434, help="replica port (default: 5434)")
    ap.add_argument("--check", action="store_true", help="start, run SELECT 1 through the proxy, stop")
    return ap.parse_args(argv)


def start_postgres(data: str, pg_port: int) -> PgServer:
    pg = PgServer(base_dir=data, name="pg", port=pg_port, persistent=True)
    if pg.is_running():
        log(f"stopping a PostgreSQL left running in {pg.datadir}")
        pg.stop()
    fresh = not pg.initialized
    log(("initialising" if fresh else "reusing") + f" PostgreSQL in {pg.server_dir}, port {pg_port}")
    pg.start()
    marker = os.path.join(pg.server_dir, "init.done")
    if not os.path.exists(marker):
        pg.psql((HERE / "init.sql").read_text())
        Path(marker).write_text("ops/demo/init.sql applied\n")
        log("applied ops/demo/init.sql (role demo, database demo, table accounts)")
    return pg


def start_replica(data: str, pg: PgServer, port: int) -> PgServer:
    replica = PgServer(base_dir=data, name="replica", port=port, persistent=True)
    if replica.initialized:
        if replica.is_running():
            replica.stop()
        log(f"reusing the replica in {replica.server_dir}, port {port}")
        replica.primary = pg
        replica.start()
        return replica
    log(f"creating a streaming replica (pg_basebackup) in {replica.server_dir}, port {port}")
    return pg.make_replica("replica", port=port, persistent=True)


def write_configs(data: str, port: int, pg: PgServer, replica: PgServer) -> tuple[str, str]:
    with open(HERE / "pgdog.toml", "rb") as f:
        cfg = tomllib.load(f)
    with open(HERE / "users.toml", "rb") as f:
        users = tomllib.load(f)
    cfg.setdefault("general", {})
    cfg["general"]["port"] = port
    # Relative paths in pgdog.toml resolve against the file's own directory.
    cfg["general"]["event_log"] = "pgdog-ev.evlog"
    for db in cfg.get("databases", []):
        server = replica if db.get("role") == "replica" else pg
        db["host"] = server.host
        db["port"] = server.port
    config_path = os.path.join(data, "pgdog.toml")
    users_path = os.path.join(data, "users.toml")
    Path(config_path).write_text(dump_toml(cfg))
    Path(users_path).write_text(dump_toml(users))
    return config_path, users_path


def start_proxy(config_path: str, users_path: str) -> subprocess.Popen:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    # Own session: a terminal Ctrl-C reaches only this script, which then stops the proxy in order.
    return subprocess.Popen(
        [sys.executable, "-m", "pgdog_ev", "run", "-c", config_path, "-u", users_path],
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_proxy(proc: subprocess.Popen | None, timeout: float = 20) -> None:
    if proc is None or proc.poll() is not None:
        return
    log("stopping the proxy")
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        log("proxy did not exit after SIGTERM; killing it")
        proc.kill()
        proc.wait(timeout=10)


def stop_server(server: PgServer | None, what: str) -> None:
    if server is None:
        return
    log(f"stopping {what}")
    try:
        server.stop("fast")
    except PgServerError as e:
        log(f"could not stop {what} cleanly: {e}")


def check(port: int) -> bool:
    import psycopg

    dsn = f"host=127.0.0.1 port={port} user={DEMO_USER} password={DEMO_PASSWORD} dbname={DEMO_DB}"
    try:
        with psycopg.connect(dsn, connect_timeout=10) as conn:
            ok = conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.Error as e:
        log(f"check failed: {e}")
        return False
    log("check: SELECT 1 through the proxy " + ("ok" if ok else "returned a wrong result"))
    return ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = args.data
    os.makedirs(data, exist_ok=True)

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    pg: PgServer | None = None
    replica: PgServer | None = None
    proxy: subprocess.Popen | None = None
    code = 0
    try:
        pg = start_postgres(data, args.pg_port)
        if stop.is_set():
            return 0
        replica = start_replica(data, pg, args.replica_port)
        config_path, users_path = write_configs(data, args.port, pg, replica)
        proxy = start_proxy(config_path, users_path)
        if not wait_for_port("127.0.0.1", args.port, timeout=30, proc=proxy):
            log(f"the proxy did not start listening on 127.0.0.1:{args.port} (exit code {proxy.poll()})")
            return 1
        if args.check:
            return 0 if check(args.port) else 1

        print(
            "\npgdog-ev demo is running.\n"
            f'  connect:  psql "postgres://{DEMO_USER}:{DEMO_PASSWORD}@127.0.0.1:{args.port}/{DEMO_DB}"\n'
            f'  primary:  psql "postgres://{DEMO_USER}:{DEMO_PASSWORD}@127.0.0.1:{pg.port}/{DEMO_DB}"\n'
            f'  replica:  psql "postgres://{DEMO_USER}:{DEMO_PASSWORD}@127.0.0.1:{replica.port}/{DEMO_DB}"\n'
            "  where:    SELECT inet_server_port();  -- reads alternate, writes go to the primary\n"
            f'  admin:    psql "postgres://admin:admin@127.0.0.1:{args.port}/admin" -c "SHOW POOLS"\n'
            f"  events:   .venv/bin/pgdog-ev events {os.path.join(data, 'pgdog-ev.evlog')}\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        while not stop.is_set():
            if proxy.poll() is not None:
                log(f"the proxy exited on its own with code {proxy.returncode}")
                code = proxy.returncode or 1
                break
            stop.wait(0.2)
        return code
    except PgServerError as e:
        log(f"PostgreSQL error:\n{e}")
        return 1
    finally:
        # Ignore further Ctrl-C while shutting down in order: proxy first, then PostgreSQL.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop_proxy(proxy)
        stop_server(replica, "the replica")
        stop_server(pg, "PostgreSQL")


if __name__ == "__main__":
    sys.exit(main())
