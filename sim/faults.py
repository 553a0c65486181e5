"""The antagonists: faults a scenario schedules, each randomised by the seed.

A fault is a class with ``validate`` (for the scenario loader, naming the
file and key on error) and ``schedule`` (arms world actions, returns when the
fault is over). Each injection is written to the event log as a NOTE of
machine SIM, so a run's timeline shows the cause next to the proxy's reaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from sim.network import INF
from state.events import Kind, Machine
from state.reasons import Reason

if TYPE_CHECKING:
    from sim.run import Run
    from sim.scenario import Scenario

PROXY_INDEX = 100
APP_INDEX = 200


def host_index(name: str) -> int:
    if name == "proxy":
        return PROXY_INDEX
    if name == "app":
        return APP_INDEX
    return int(name[2:])


class Fault:
    kind: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def validate(cls, spec: dict[str, Any], sc: Scenario, where: str) -> None:
        from sim.scenario import ScenarioError

        for key in cls.needs:
            if key not in spec:
                raise ScenarioError(f"{where}: fault {cls.kind!r} needs '{key}'")
        for key in ("host", "a", "b"):
            if key in spec:
                _check_host(spec[key], sc, f"{where}.{key}", allow_proxy=cls.kind in _PROXY_OK or key != "host")

    @classmethod
    def schedule(cls, run: Run, spec: dict[str, Any], at: float) -> float:
        raise NotImplementedError


_PROXY_OK = {"crash", "restart", "partition", "stall", "reset", "half_close", "proxy_restart"}


def _check_host(name: Any, sc: Scenario, where: str, allow_proxy: bool) -> None:
    from sim.scenario import ScenarioError

    valid = [f"pg{i}" for i in range(sc.hosts)] + (["proxy", "app"] if allow_proxy else [])
    if name not in valid:
        raise ScenarioError(f"{where}: unknown host {name!r} (known: {', '.join(valid)})")


def note(run: Run, reason: Reason, host: str) -> None:
    """A NOTE of machine SIM: id numbers the injections of the run, b names the host."""
    run.injections += 1
    run.events.emit(run.world.now(), Kind.NOTE, Machine.SIM, run.injections, 0, 0, reason, host_index(host))


class Crash(Fault):
    kind = "crash"
    needs = ("host",)

    @classmethod
    def schedule(cls, run: Run, spec: dict[str, Any], at: float) -> float:
        name = spec["host"]

        def go() -> None:
            note(run, Reason.FAULT_CRASH, name)
            run.host(name).crash()

        run.world.at(at, go)
        end = at
        if "restart_after" in spec:
            end = at + run.world.uniform(spec["restart_after"])
            run.world.at(end, lambda: (note(run, Reason.FAULT_RESTART, name), run.restart(name)))
        return end


class Restart(Fault):
    kind = "restart"
    needs = ("host",)

    @classmethod
    def schedule(cls, run: Run, spec: dict[str, Any], at: float) -> float:
        name = spec["host"]
        run.world.at(at, lambda: (note(run, Reason.FAULT_RESTART, name), run.restart(name)))
        return at


class ProxyRestart(Fault):
    kind = "proxy_restart"

    @classmethod
    def schedule(cls, run: Run, spec: dict[str, Any], at: float) -> float:
        down = run.world.uniform(spec.get("down", [0.05, 0.5]))
        run.world.at(at, lambda: (note(run, Reason.FAULT_CRASH, "proxy"), run.proxy.crash()))
        run.world.at(at + down, lambda: (note(run, Reason.FAULT_RESTART, "proxy"), run.proxy.start()))
        return at + down


class PowerOff(Fault):
    kind = "power_off"
    needs = ("host", "duration")

    @classmethod
    def schedule(cls, run: Run, spec: dict[str, Any], at: float) -> float:
        name = spec["host"]
        end = at + run.world.uniform(spec["duration"])
        run.world.at(at, lambda: (note(run, Reason.FAULT_POWER_OFF, name), run.pg(name).power_off()))
        run.world.at(end, lambda: (note(run, Reason.FAULT_POWER_ON, name), run.pg(name).power_on()))
        return end


class Hang(Fault):
    kind = "hang"
    needs = ("host", "duration")

    @classmethod
    def schedule(cls, run: Run, spec: dict[str, Any], at: float) -> float:
        name = spec["host"]
        end = at + run.world.uniform(spec["duration"])
        run.world.at(at, lambda: (note(run, Reason.FAULT_HANG, name), run.pg(name).hang(True)))
        run.world.at(end, lambda: (note(run, Reason.FAULT_RESUME, name), run.pg(name).hang(False)))
        return end


class Flap(Fault):
    """A host that keeps hanging and recovering: health checks fail, pass, fail..."""

    kind = "flap"
    needs = ("host", "times")

    @classmethod
    def schedule(cls, run: Run, spec: dict[str, Any], at: float) -> float:
        name = spec["host"]
        t = at
        for _ in range(int(spec["times"])):
            down = run.world.uniform(spec.get("down", [0.2, 1.0]))
            up = run.world.uniform(spec.get("up", [0.2, 1.0]))
            run.world.at(t, lambda: (note(run, Reason.FAULT_HANG, name), run.pg(name).hang(True)))
            run.world.at(t + down, lambda: (note(run, Reason.FAULT_RESUME, name), run.pg(name).hang(False)))
            t += down + up
        return t


class Lag(Fault):
    kind = "lag"
    needs = ("host", "lag", "duration")

    @classmethod
    def schedule(cls, run: Run, spec: dict[str, Any], at: float) -> float:
        name = spec["host"]
        end = at + run.world.uniform(spec["duration"])
        lag = run.world.uniform(spec["lag"])
        saved: list[float] = []

        def start() -> None:
            note(run, Reason.FAULT_LAG, name)
            db = run.pg(name).database
            saved.append(db.lag)
            db.lag = lag

        def stop() -> None:
            note(run, Reason.FAULT_LAG_END, name)
            run.pg(name).database.lag = saved[0] if saved else 0.0

        run.world.at(at, start)
        run.world.at(end, stop)
        return end


class PauseReplay(Fault):
    kind = "pause_replay"
    needs = ("host", "duration")

    @classmethod
    def schedule(cls, run: Run, spec: dict[str, Any], at: float) -> float:
        name = spec["host"]
        end = at + run.world.uniform(spec["duration"])

        def pause(on: bool) -> None:
            note(run, Reason.FAULT_REPLAY_PAUSE if on else Reason.FAULT_REPLAY_RESUME, name)
            run.pg(name).database.replay_paused = on

        run.world.at(at, pause, True)
        run.world.at(end, pause, False)
        return end


class Partition(Fault):
    """The link between two hosts drops everything (both ways) until it heals."""

    kind = "partition"
    needs = ("a", "b", "duration")

    @classmethod
    def schedule(cls, run: Run, spec: dict[str, Any], at: float) -> float:
        a, b = spec["a"], spec["b"]
        end = at + run.world.uniform(spec["duration"])

        def cut() -> None:
            note(run, Reason.FAULT_PARTITION, b if a in ("proxy", "app") else a)
            run.world.net.block(a, b, INF)

        def heal() -> None:
            note(run, Reason.FAULT_HEAL, b if a in ("proxy", "app") else a)
            run.world.net.heal(a, b)

        run.world.at(at, cut)
        run.world.at(end, heal)
        return end


class Stall(Fault):
    """A short hiccup on a link: segments wait, then flow again in order."""

    kind = "stall"
    needs = ("a", "b")

    @classmethod
    def schedule(cls, run: Run, spec: dict[str, Any], at: float) -> float:
        a, b = spec["a"], spec["b"]
        times = int(spec.get("times", 1))
        t = at
        for _ in range(times):
            length = run.world.uniform(spec.get("duration", [0.05, 0.5]))
            run.world.at(t, lambda length=length: (note(run, Reason.FAULT_STALL, b),
                                                   run.world.net.block(a, b, run.world.now() + length)))
            t += length + run.world.uniform(spec.get("gap", [0.1, 1.0]))
        return t


def _some_connections(run: Run, a: str, b: str, count: int) -> list[tuple[Any, Any]]:
    """Up to ``count`` open connections between hosts ``a`` and ``b``, chosen by the seed,
    each as (the ``a`` end, the ``b`` end)."""
    conns = run.world.net.connections_of(a, b)
    chosen = []
    for _ in range(min(count, len(conns))):
        x, y = conns.pop(run.world.rng.randrange(len(conns)))
        chosen.append((x, y) if x.node.name == a else (y, x))
    return chosen


class Reset(Fault):
    """TCP resets on some of the connections between two hosts."""

    kind = "reset"
    needs = ("a", "b")

    @classmethod
    def schedule(cls, run: Run, spec: dict[str, Any], at: float) -> float:
        a, b = spec["a"], spec["b"]

        def go() -> None:
            note(run, Reason.FAULT_RESET, b)
            for end_a, _ in _some_connections(run, a, b, int(spec.get("count", 1))):
                run.world.net.reset_connection(end_a.conn_id)

        run.world.at(at, go)
        return at


class HalfClose(Fault):
    """Some connections get a FIN from the ``b`` side while ``a`` keeps its half open."""

    kind = "half_close"
    needs = ("a", "b")

    @classmethod
    def schedule(cls, run: Run, spec: dict[str, Any], at: float) -> float:
        a, b = spec["a"], spec["b"]

        def go() -> None:
            note(run, Reason.FAULT_HALF_CLOSE, b)
            for end_a, _ in _some_connections(run, a, b, int(spec.get("count", 1))):
                run.world.net.half_close(end_a)

        run.world.at(at, go)
        return at


class Promote(Fault):
    """Failover: once the replica has replayed all the old primary durably committed, promote it."""

    kind = "promote"
    needs = ("host",)

    @classmethod
    def schedule(cls, run: Run, spec: dict[str, Any], at: float) -> float:
        name = spec["host"]
        run.world.at(at, lambda: (note(run, Reason.FAULT_PROMOTE, name), run.promote(name)))
        return at


class Rejoin(Fault):
    """The old primary comes back as a replica of the new one (its divergent tail is discarded)."""

    kind = "rejoin"
    needs = ("host", "primary")

    @classmethod
    def schedule(cls, run: Run, spec: dict[str, Any], at: float) -> float:
        name, primary = spec["host"], spec["primary"]
        run.world.at(at, lambda: (note(run, Reason.FAULT_REJOIN, name), run.rejoin(name, primary)))
        return at


class Slow(Fault):
    kind = "slow"
    needs = ("host", "delay", "duration")

    @classmethod
    def schedule(cls, run: Run, spec: dict[str, Any], at: float) -> float:
        name = spec["host"]
        end = at + run.world.uniform(spec["duration"])
        delay = run.world.uniform(spec["delay"])

        def set_delay(value: float, reason: Reason) -> None:
            note(run, reason, name)
            run.pg(name).server.delay = value

        run.world.at(at, set_delay, delay, Reason.FAULT_SLOW)
        run.world.at(end, set_delay, 0.0, Reason.FAULT_SLOW_END)
        return end


class AddHost(Fault):
    """A reload that adds a host the proxy's configuration left out until now (an operator
    bringing in a new replica). The host itself runs from the start, or not, as other faults say."""

    kind = "add_host"
    needs = ("host",)

    @classmethod
    def validate(cls, spec: dict[str, Any], sc: Scenario, where: str) -> None:
        from sim.scenario import ScenarioError

        super().validate(spec, sc, where)
        if spec["host"] == "pg0":
            raise ScenarioError(f"{where}.host: pg0 is the primary, configured from the start")

    @classmethod
    def schedule(cls, run: Run, spec: dict[str, Any], at: float) -> float:
        name = spec["host"]
        run.world.at(at, lambda: (note(run, Reason.FAULT_ADD_HOST, name), run.add_host(name)))
        return at


FAULTS: dict[str, type[Fault]] = {
    cls.kind: cls
    for cls in (Crash, Restart, ProxyRestart, PowerOff, Hang, Flap, Lag, PauseReplay, Partition, Stall, Reset,
                HalfClose, Promote, Rejoin, Slow, AddHost)
}
