"""Command line: ``pgdog-ev [run|configcheck|events|replay|sim|hash] ...``.

``run`` is the default, as in PgDog, so ``pgdog-ev -c pgdog.toml`` starts the
proxy. Default config paths are ./pgdog.toml and ./users.toml when present.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from pgdog_ev import __version__

COMMANDS = ("run", "configcheck", "events", "replay", "sim", "hash")


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="pgdog.toml (default: ./pgdog.toml if present)")
    p.add_argument("-u", "--users", help="users.toml (default: ./users.toml if present)")
    p.add_argument(
        "-d", "--database-url", action="append", default=[], metavar="URL",
        help="postgres://user:password@host:port/database?role=..&pool_size=.. (repeatable; replaces [[databases]] and users)",
    )


def _paths(args: argparse.Namespace) -> tuple[str | None, str | None]:
    config = args.config or ("pgdog.toml" if os.path.exists("pgdog.toml") else None)
    users = args.users or ("users.toml" if os.path.exists("users.toml") else None)
    return config, users


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pgdog-ev", description="PostgreSQL pooler and proxy")
    p.add_argument("--version", action="version", version=f"pgdog-ev {__version__}")
    sub = p.add_subparsers(dest="command")
    _config_args(sub.add_parser("run", help="run the proxy (default)"))
    _config_args(sub.add_parser("configcheck", help="validate the configuration and exit 0/1"))
    sub.add_parser("events", help="print an event-log file as a timeline", add_help=False)
    sub.add_parser("sim", help="run scenarios in the deterministic simulator", add_help=False)
    sub.add_parser("replay", help="an event log as an incident timeline, or the state at one moment",
                   add_help=False)
    h = sub.add_parser("hash", help="print a SCRAM-SHA-256 verifier for users.toml password_hash")
    h.add_argument("password")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] == "events":
        from pgdog_ev.eventlog.cli import events_main

        return events_main(args_list[1:])
    if args_list and args_list[0] == "sim":
        from sim.cli import sim_main

        return sim_main(args_list[1:])
    if args_list and args_list[0] == "replay":
        from pgdog_ev.eventlog.replay import replay_main

        return replay_main(args_list[1:])
    if args_list and args_list[0] == "worker":
        # Not in the help: a worker process of [general] workers, started by the supervisor.
        from pgdog_ev.workers.main import worker_main

        return worker_main(args_list[1:])
    if not args_list or (args_list[0] not in COMMANDS and args_list[0] not in ("-h", "--help", "--version")):
        args_list.insert(0, "run")
    args = parser().parse_args(args_list)
    if args.command == "hash":
        from pgdog_ev.auth.scram import make_verifier

        print(make_verifier(args.password, os.urandom))
        return 0
    config, users = _paths(args)
    if args.command == "configcheck":
        from pgdog_ev.config import ConfigError
        from pgdog_ev.daemon import load
        from pgdog_ev.tls import build_tls

        try:
            cfg = load(config, users, args.database_url)
            build_tls(cfg.general, cfg.config_path)
        except ConfigError as exc:
            print(f"pgdog-ev: configuration error: {exc}", file=sys.stderr)
            return 1
        print(f"configuration OK: {len(cfg.database_names())} databases, {len(cfg.users)} users")
        return 0
    from pgdog_ev.daemon import run

    return run(config, users, args.database_url)


if __name__ == "__main__":
    sys.exit(main())
