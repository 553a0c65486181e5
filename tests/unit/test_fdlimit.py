"""The daemon raises its soft open-files limit to the hard one at start, and says so when even
that cannot fit max_client_conn."""

from __future__ import annotations

import logging
import resource

import pytest

from pgdog_ev import fdlimit


class FakeLimits:
    def __init__(self, soft: int, hard: int, refuse: bool = False) -> None:
        self.soft, self.hard, self.refuse = soft, hard, refuse
        self.calls: list[tuple[int, int]] = []

    def get(self, which: int) -> tuple[int, int]:
        assert which == resource.RLIMIT_NOFILE
        return self.soft, self.hard

    def set(self, which: int, limits: tuple[int, int]) -> None:
        assert which == resource.RLIMIT_NOFILE
        self.calls.append(limits)
        if self.refuse:
            raise ValueError("not allowed")
        self.soft, self.hard = limits


@pytest.fixture
def limits(monkeypatch):
    def install(soft: int, hard: int, refuse: bool = False) -> FakeLimits:
        fake = FakeLimits(soft, hard, refuse)
        monkeypatch.setattr(fdlimit.resource, "getrlimit", fake.get)
        monkeypatch.setattr(fdlimit.resource, "setrlimit", fake.set)
        return fake

    return install


def test_soft_limit_raised_to_hard(limits, caplog):
    fake = limits(1024, 65536)
    with caplog.at_level(logging.WARNING, logger="pgdog_ev"):
        assert fdlimit.raise_nofile(5000) == 65536
    assert fake.calls == [(65536, 65536)] and fake.soft == 65536
    assert not caplog.records


def test_already_at_hard_limit_is_left_alone(limits):
    fake = limits(4096, 4096)
    assert fdlimit.raise_nofile(None) == 4096
    assert fake.calls == []


def test_unlimited_hard_limit_is_capped(limits):
    fake = limits(1024, resource.RLIM_INFINITY)
    assert fdlimit.raise_nofile(100) == fdlimit.UNLIMITED
    assert fake.calls == [(fdlimit.UNLIMITED, resource.RLIM_INFINITY)]


def test_too_low_for_max_client_conn_warns(limits, caplog):
    limits(256, 512)
    with caplog.at_level(logging.WARNING, logger="pgdog_ev"):
        assert fdlimit.raise_nofile(2000) == 512
    (record,) = caplog.records
    assert "max_client_conn = 2000" in record.getMessage() and "512" in record.getMessage()


def test_refused_raise_warns_and_keeps_going(limits, caplog):
    limits(1024, 65536, refuse=True)
    with caplog.at_level(logging.WARNING, logger="pgdog_ev"):
        assert fdlimit.raise_nofile(None) == 1024
    assert "could not raise the open files limit" in caplog.records[0].getMessage()
