"""Tests for state.registry (isolated from real registrations via monkeypatch)."""

from __future__ import annotations

from enum import IntEnum

import pytest

from state import registry


class St(IntEnum):
    IDLE = 1
    BUSY = 2


class St2(IntEnum):
    CLOSED = 9


class Why(IntEnum):
    CHECKOUT = 4


class GlobalWhy(IntEnum):
    TIMEOUT = 4
    RESET = 5


class Tm(IntEnum):
    IDLE_TIMEOUT = 3


@pytest.fixture
def isolated(monkeypatch):
    monkeypatch.setattr(registry, "_states", {})
    monkeypatch.setattr(registry, "_reasons", {})
    monkeypatch.setattr(registry, "_global_reasons", [])
    monkeypatch.setattr(registry, "_timers", [])
    return registry


def test_states_and_fallback(isolated):
    reg = isolated
    assert reg.state_name(1, 1) == "1"
    reg.register_states(1, St)
    reg.register_states(1, St2)
    reg.register_states(1, St)  # duplicate ignored
    assert reg.state_name(1, 2) == "BUSY"
    assert reg.state_name(1, 9) == "CLOSED"
    assert reg.state_name(1, 77) == "77"
    assert reg.state_name(2, 2) == "2"


def test_reasons_machine_first_then_global(isolated):
    reg = isolated
    reg.register_reasons(GlobalWhy)
    reg.register_reasons(1, Why)
    assert reg.reason_name(1, 4) == "CHECKOUT"
    assert reg.reason_name(1, 5) == "RESET"
    assert reg.reason_name(2, 4) == "TIMEOUT"
    assert reg.reason_name(2, 0) == "0"
    with pytest.raises(TypeError):
        reg.register_reasons(3)


def test_timers(isolated):
    reg = isolated
    assert reg.timer_name(3) == "3"
    reg.register_timers(Tm)
    assert reg.timer_name(3) == "IDLE_TIMEOUT"


def test_load_all_ignores_only_the_missing_machines_module(monkeypatch):
    monkeypatch.setattr(registry, "_attempted", False)
    monkeypatch.setattr(registry, "_loaded", False)
    monkeypatch.setattr(registry, "MACHINES_MODULE", "state._no_such_module_for_tests")
    assert registry.load_all() is False
    assert registry.load_all() is False  # attempted once, cached

    def broken_import(name):
        raise ModuleNotFoundError("No module named 'dependency'", name="dependency")

    monkeypatch.setattr(registry, "_attempted", False)
    monkeypatch.setattr(registry.importlib, "import_module", broken_import)
    with pytest.raises(ModuleNotFoundError):
        registry.load_all()
