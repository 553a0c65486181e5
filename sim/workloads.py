"""What the fake clients do: small scripts with known keys, so every outcome can be checked.

Keys are unique per client (``client id * 1_000_000 + n``), so a row in any
database says exactly which transaction wrote it. Each script records in the
application's History what the proxy told it, and reports on the spot what
is wrong in the answers themselves (a value nobody wrote, a query cancelled
that nobody cancelled, an acknowledged write the primary does not show).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from sim.pgclient import Connect, Disconnect, Extended, Query, Result, Script, Sleep

if TYPE_CHECKING:
    from sim.apphost import AppHost, History
    from sim.pgclient import ClientDriver

CANCELED = "57014"
PRIMARY = "/* pgdog_role: primary */ "


class Context:
    """What a script may use: the app host, its history, the world's PRNG, think times."""

    def __init__(self, app: AppHost, options: dict) -> None:
        self.app = app
        self.world = app.world
        self.history: History = app.history
        self.rng = app.world.rng
        self.think = options.get("think", [0.005, 0.05])
        self.options = options

    def pause(self) -> Sleep:
        return Sleep(self.world.uniform(self.think))


def _connected(d: ClientDriver, ctx: Context) -> Script:
    """(Re)connect until it works or the run is stopping; a refused login is retried later."""
    while not ctx.app.stop():
        r = yield Connect(**ctx.options.get("login", {}))
        if r is not None and r.ok:
            return
        ctx.history.error(r.sqlstate if r is not None else None)
        yield Sleep(ctx.world.uniform([0.05, 0.3]))


def _check_cancel(d: ClientDriver, r: Result) -> None:
    """57014 is only for a client that sent a CancelRequest on this connection.

    Not necessarily for this query: as with PostgreSQL itself, a cancel that is still on
    its way when its query finishes may hit the same session's next query."""
    if r.sqlstate == CANCELED and not r.cancelled_sent and not d.cancels_on_connection:
        d.world.violation("cancel", f"client {d.cid} ({d.kind}) got 57014 without sending a cancel: {r.message}")


def writer(d: ClientDriver, ctx: Context) -> Script:
    """BEGIN; INSERT one or two known keys; COMMIT. Acknowledged commits must survive."""
    h = ctx.history
    n = 0
    yield from _connected(d, ctx)
    while not ctx.app.stop():
        rows = 1 + (ctx.rng.random() < 0.3)
        keys = []
        for _ in range(rows):
            n += 1
            keys.append(("kv", d.cid * 1_000_000 + n))
        r = yield Query("BEGIN")
        failed = not r.ok
        for table, key in keys:
            if failed:
                break
            r = yield Query(f"INSERT INTO {table} (k, v) VALUES ({key}, {key % 9973})")
            _check_cancel(d, r)
            failed = not r.ok
        if failed:
            # No COMMIT was ever sent: these rows must never appear anywhere.
            h.never.update(keys)
            h.error(r.sqlstate)
            if r.lost:
                yield from _connected(d, ctx)
            else:
                r = yield Query("ROLLBACK")
                if r.lost:
                    yield from _connected(d, ctx)
            continue
        r = yield Query("COMMIT")
        _check_cancel(d, r)
        if r.ok and r.tags == ["COMMIT"]:
            for table, key in keys:
                h.acked[(table, key)] = key % 9973
            h.committed += 1
        elif r.lost:
            for table, key in keys:
                h.maybe[(table, key)] = key % 9973
            yield from _connected(d, ctx)
        else:
            h.never.update(keys)
            h.error(r.sqlstate)
        yield ctx.pause()


def reader(d: ClientDriver, ctx: Context) -> Script:
    """Reads acknowledged keys: a replica may lag (absent is fine) but may never show a wrong
    value; through the primary override an acknowledged key must be there."""
    h = ctx.history
    yield from _connected(d, ctx)
    while not ctx.app.stop():
        if not h.acked:
            yield Sleep(0.05)
            continue
        items = list(h.acked.items())
        (table, key), value = items[ctx.rng.randrange(len(items))]
        primary = ctx.rng.random() < ctx.options.get("primary_share", 0.2)
        r = yield Query(f"{PRIMARY if primary else ''}SELECT v FROM {table} WHERE k = {key}")
        _check_cancel(d, r)
        if r.lost:
            yield from _connected(d, ctx)
            continue
        if not r.ok:
            h.error(r.sqlstate)
        elif r.rows and r.value != str(value):
            d.world.violation("read", f"client {d.cid} read k={key} v={r.value!r}, but {value} was committed")
        elif primary and not r.rows and (table, key) in h.acked:
            d.world.violation("acked-visible", f"client {d.cid}: acknowledged k={key} missing on the primary")
        yield ctx.pause()


def counter(d: ClientDriver, ctx: Context) -> Script:
    """Increments its own counter row in a transaction; the final value must lie between the
    acknowledged increments and those plus the unknown ones."""
    h = ctx.history
    key = d.cid
    tally = h.counters.setdefault(key, [0, 0])
    yield from _connected(d, ctx)
    while not ctx.app.stop():
        r = yield Query("BEGIN")
        if r.ok:
            r = yield Query(f"UPDATE counters SET v = v + 1 WHERE k = {key}")
            _check_cancel(d, r)
        if not r.ok:
            h.error(r.sqlstate)
            if r.lost:
                yield from _connected(d, ctx)
            else:
                yield Query("ROLLBACK")
            continue
        if r.tags != ["UPDATE 1"]:
            d.world.violation("counter", f"client {d.cid}: UPDATE of its counter answered {r.tags}")
        r = yield Query("COMMIT")
        if r.ok and r.tags == ["COMMIT"]:
            tally[0] += 1
        elif r.lost:
            tally[1] += 1
            yield from _connected(d, ctx)
        yield ctx.pause()


def abandoner(d: ClientDriver, ctx: Context) -> Script:
    """BEGIN; INSERT; then vanish without COMMIT. The row must never be committed by anyone."""
    h = ctx.history
    n = 0
    while not ctx.app.stop():
        yield from _connected(d, ctx)
        n += 1
        key = d.cid * 1_000_000 + n
        r = yield Query("BEGIN")
        if r.ok:
            h.never.add(("kv", key))
            yield Query(f"INSERT INTO kv (k, v) VALUES ({key}, 1)")
        yield Disconnect(abrupt=ctx.rng.random() < 0.7)
        yield ctx.pause()


def canceller(d: ClientDriver, ctx: Context) -> Script:
    """Slow queries cancelled at a random moment: the cancel must hit this query or nothing."""
    h = ctx.history
    yield from _connected(d, ctx)
    while not ctx.app.stop():
        sleep = ctx.world.uniform([0.02, 0.2])
        when = ctx.world.uniform([0.0, 0.3])
        r = yield Query(f"SELECT pg_sleep({sleep:.3f})", cancel_after=when)
        _check_cancel(d, r)
        if r.lost:
            yield from _connected(d, ctx)
        elif not r.ok and r.sqlstate != CANCELED:
            h.error(r.sqlstate)
        yield ctx.pause()


def pipeliner(d: ClientDriver, ctx: Context) -> Script:
    """Extended protocol: INSERT and read it back in one pipeline (one implicit transaction)."""
    h = ctx.history
    n = 500_000
    yield from _connected(d, ctx)
    while not ctx.app.stop():
        n += 1
        key = d.cid * 1_000_000 + n
        value = key % 9973
        rs = yield Extended([
            ("INSERT INTO kv (k, v) VALUES ($1, $2)", [str(key), str(value)]),
            ("SELECT v FROM kv WHERE k = $1", [str(key)]),
        ])
        results = rs if isinstance(rs, list) else [rs]
        if any(r.lost for r in results):
            h.maybe[("kv", key)] = value
            yield from _connected(d, ctx)
            continue
        if all(r.ok for r in results) and len(results) == 2:
            if results[1].value != str(value):
                d.world.violation("read", f"client {d.cid}: pipeline read {results[1].value!r} for k={key}")
            h.acked[("kv", key)] = value
            h.committed += 1
        else:
            h.never.add(("kv", key))
            h.error(next((r.sqlstate for r in results if not r.ok), None))
        yield ctx.pause()


def idler(d: ClientDriver, ctx: Context) -> Script:
    """Connected and mostly idle: pings now and then."""
    yield from _connected(d, ctx)
    while not ctx.app.stop():
        yield Sleep(ctx.world.uniform([0.5, 2.0]))
        r = yield Query("SELECT 1")
        if r.lost:
            yield from _connected(d, ctx)
        elif r.ok and r.value != "1":
            d.world.violation("read", f"client {d.cid}: SELECT 1 answered {r.value!r}")


def holder(d: ClientDriver, ctx: Context) -> Script:
    """Long transactions that keep a server busy: pool exhaustion and checkout timeouts."""
    h = ctx.history
    yield from _connected(d, ctx)
    while not ctx.app.stop():
        r = yield Query("BEGIN")
        if r.ok:
            r = yield Query(f"SELECT pg_sleep({ctx.world.uniform(ctx.options.get('hold', [0.2, 1.0])):.3f})")
            _check_cancel(d, r)
        if r.lost:
            yield from _connected(d, ctx)
            continue
        if not r.ok:
            h.error(r.sqlstate)
        r = yield Query("COMMIT" if r.ok else "ROLLBACK")
        if r.lost:
            yield from _connected(d, ctx)
        yield ctx.pause()


WORKLOADS: dict[str, Callable[[ClientDriver, Context], Script]] = {
    "writer": writer,
    "reader": reader,
    "counter": counter,
    "abandoner": abandoner,
    "canceller": canceller,
    "pipeliner": pipeliner,
    "idler": idler,
    "holder": holder,
}
