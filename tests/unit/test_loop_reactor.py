"""Reactor scheduling: callbacks, timers, exceptions, virtual time."""

from __future__ import annotations

import socket

from loop.clock import ManualClock
from loop.poller import EventHandler
from loop.reactor import Reactor


class VirtualPoller:
    """No IO at all; a poll timeout simply advances virtual time (what the simulator does)."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.timeouts: list[float | None] = []
        self.handlers: dict[int, tuple[EventHandler, int]] = {}

    def register(self, fd: int, events: int, handler: EventHandler) -> None:
        self.handlers[fd] = (handler, events)

    def modify(self, fd: int, events: int, handler: EventHandler) -> None:
        self.handlers[fd] = (handler, events)

    def unregister(self, fd: int) -> None:
        del self.handlers[fd]

    def poll(self, timeout: float | None) -> list[tuple[EventHandler, int]]:
        self.timeouts.append(timeout)
        if timeout:
            self.clock.advance(timeout)
        return []

    def close(self) -> None:
        pass


class RecordingReactor(Reactor):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.errors: list[tuple[BaseException, str]] = []

    def handle_exception(self, exc: BaseException, context: str) -> None:
        self.errors.append((exc, context))


def virtual_reactor() -> tuple[RecordingReactor, ManualClock, VirtualPoller]:
    clock = ManualClock()
    poller = VirtualPoller(clock)
    return RecordingReactor(clock=clock, poller=poller), clock, poller


def test_call_soon_runs_in_order_and_requeued_next_pass() -> None:
    reactor, _, _ = virtual_reactor()
    order: list[str] = []

    def requeue() -> None:
        order.append("b")
        reactor.call_soon(order.append, "next-pass")

    reactor.call_soon(order.append, "a")
    reactor.call_soon(requeue)
    reactor.call_soon(order.append, "c")
    reactor.run_once()
    assert order == ["a", "b", "c"]
    reactor.run_once()
    assert order == ["a", "b", "c", "next-pass"]


def test_ready_callbacks_make_poll_non_blocking() -> None:
    reactor, _, poller = virtual_reactor()
    reactor.call_later(10.0, lambda: None)
    reactor.call_soon(lambda: None)
    reactor.run_once()
    assert poller.timeouts[-1] == 0.0
    reactor.run_once(timeout=3.0)
    assert poller.timeouts[-1] == 3.0
    reactor.run_once()
    assert poller.timeouts[-1] == 7.0


def test_timers_fire_in_virtual_time() -> None:
    reactor, clock, _ = virtual_reactor()
    fired: list[tuple[str, float]] = []
    reactor.call_later(2.0, lambda: fired.append(("two", clock.now())))
    reactor.call_later(1.0, lambda: fired.append(("one", clock.now())))
    reactor.call_at(1.0, lambda: fired.append(("one-b", clock.now())))
    cancelled = reactor.call_later(1.5, lambda: fired.append(("never", clock.now())))
    cancelled.cancel()
    assert reactor.run_until(lambda: len(fired) == 3, timeout=10.0)
    assert fired == [("one", 1.0), ("one-b", 1.0), ("two", 2.0)]
    assert reactor.stats.timers == 3


def test_timer_cancelled_by_earlier_timer_in_same_batch() -> None:
    reactor, clock, _ = virtual_reactor()
    fired: list[str] = []
    handles = []
    reactor.call_at(1.0, lambda: handles[0].cancel())
    handles.append(reactor.call_at(1.0, fired.append, "second"))
    reactor.call_at(0.5, fired.append, "first")
    clock.set(1.0)
    reactor.run_once(0)
    assert fired == ["first"]


def test_io_then_timers_then_callbacks() -> None:
    reactor = RecordingReactor(clock=ManualClock())
    order: list[str] = []
    a, b = socket.socketpair()

    class Handler:
        def on_events(self, events: int) -> None:
            order.append("io")
            a.recv(10)
            reactor.call_soon(order.append, "soon-from-io")

    try:
        reactor.poller.register(a.fileno(), 1, Handler())
        b.send(b"x")
        reactor.call_at(0.0, order.append, "timer")
        reactor.call_soon(order.append, "soon")
        reactor.run_once(0)
        assert order == ["io", "timer", "soon", "soon-from-io"]
        reactor.poller.unregister(a.fileno())
    finally:
        a.close()
        b.close()
        reactor.close()


def test_exceptions_are_routed_and_loop_keeps_running() -> None:
    reactor, _, _ = virtual_reactor()
    ran: list[str] = []

    def boom() -> None:
        raise RuntimeError("boom")

    reactor.call_soon(boom)
    reactor.call_soon(ran.append, "after")
    reactor.call_later(1.0, boom)
    reactor.call_later(1.0, ran.append, "timer-after")
    reactor.run_until(lambda: len(ran) == 2, timeout=5.0)
    assert ran == ["after", "timer-after"]
    assert [str(e) for e, _ in reactor.errors] == ["boom", "boom"]
    assert "callback" in reactor.errors[0][1]
    assert "timer" in reactor.errors[1][1]


def test_default_handle_exception_prints(capsys: object) -> None:
    reactor, _, _ = virtual_reactor()
    Reactor.handle_exception(reactor, ValueError("printed"), "ctx")
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert "ctx" in err and "ValueError: printed" in err


def test_owner_sinks_hear_exceptions_and_starvation(capsys: object) -> None:
    """The daemon reports through exception_sink and starvation_sink (a compiled reactor's
    methods cannot be replaced on the instance); nothing reaches stderr then."""
    reactor = Reactor(clock=ManualClock(), poller=VirtualPoller(ManualClock()))
    errors: list[tuple[BaseException, str]] = []
    starved: list[tuple[OSError | None, str]] = []
    reactor.exception_sink = lambda exc, context: errors.append((exc, context))
    reactor.starvation_sink = lambda exc, context: starved.append((exc, context))

    def boom() -> None:
        raise ValueError("routed")

    reactor.call_soon(boom)
    reactor.run_once()
    assert [(type(e), str(e)) for e, _ in errors] == [(ValueError, "routed")]
    assert "callback" in errors[0][1] and reactor.stats.exceptions == 1
    full = OSError(24, "Too many open files")
    reactor.handle_starvation(full, "listener")
    reactor.handle_starvation(None, "listener")
    assert starved == [(full, "listener"), (None, "listener")]
    assert capsys.readouterr().err == ""  # type: ignore[attr-defined]
    reactor.close()


def test_run_forever_until_stop() -> None:
    reactor, _, _ = virtual_reactor()
    count = [0]

    def tick() -> None:
        count[0] += 1
        if count[0] == 5:
            reactor.stop()
        else:
            reactor.call_later(0.1, tick)

    reactor.call_soon(tick)
    reactor.run_forever()
    assert count[0] == 5
    assert not reactor.is_running()
    reactor.close()
    assert reactor.is_closed()
    reactor.close()


def test_run_until_times_out() -> None:
    reactor, clock, _ = virtual_reactor()
    assert not reactor.run_until(lambda: False, timeout=2.0)
    assert clock.now() >= 2.0
