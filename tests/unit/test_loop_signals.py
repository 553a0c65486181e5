"""Signals are delivered through the loop, never inside the Python signal handler."""

from __future__ import annotations

import os
import signal
import traceback

from loop.reactor import Reactor

DEADLINE = 5.0


class TestReactor(Reactor):
    __test__ = False

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[tuple[BaseException, str]] = []

    def handle_exception(self, exc: BaseException, context: str) -> None:
        self.errors.append((exc, context))


def _from_the_loop() -> bool:
    """Called from the loop's dispatch of the wakeup socket, not from a signal handler (the
    loop's own frames may be compiled and absent from the stack; the dispatcher's are not)."""
    names = [frame.name for frame in traceback.extract_stack()]
    return "on_events" in names and "_noop_handler" not in names


def test_signal_callback_runs_inside_loop() -> None:
    previous = signal.getsignal(signal.SIGUSR1)
    reactor = TestReactor()
    calls: list[tuple[str, bool]] = []
    try:
        reactor.add_signal_handler(signal.SIGUSR1, lambda tag: calls.append((tag, _from_the_loop())), "usr1")
        os.kill(os.getpid(), signal.SIGUSR1)
        assert calls == []
        assert reactor.run_until(lambda: bool(calls), timeout=DEADLINE)
        assert calls == [("usr1", True)]
        # Again, to check the wakeup socket was drained.
        os.kill(os.getpid(), signal.SIGUSR1)
        assert reactor.run_until(lambda: len(calls) == 2, timeout=DEADLINE)
    finally:
        reactor.close()
    assert signal.getsignal(signal.SIGUSR1) == previous
    # The wakeup fd is restored (to "none"): setting it again returns the previous value.
    assert signal.set_wakeup_fd(-1) == -1


def test_signal_exception_is_routed_and_remove_restores() -> None:
    previous = signal.getsignal(signal.SIGUSR2)
    reactor = TestReactor()
    ran: list[str] = []
    try:

        def boom() -> None:
            raise RuntimeError("handler failed")

        reactor.add_signal_handler(signal.SIGUSR2, boom)
        reactor.add_signal_handler(signal.SIGUSR1, ran.append, "usr1")
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert reactor.run_until(lambda: bool(ran), timeout=DEADLINE)
        assert [str(e) for e, _ in reactor.errors] == ["handler failed"]
        assert reactor.remove_signal_handler(signal.SIGUSR2)
        assert not reactor.remove_signal_handler(signal.SIGUSR2)
        assert signal.getsignal(signal.SIGUSR2) == previous
    finally:
        reactor.close()
    assert signal.getsignal(signal.SIGUSR1) == previous
    reactor.close()  # idempotent
