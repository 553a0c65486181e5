"""SettingsTracker: session settings as PostgreSQL keeps them, across transactions and savepoints."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from state.settings_tracker import SettingsTracker

STARTUP = {"application_name": "app", "timezone": "UTC"}


def tracker() -> SettingsTracker:
    return SettingsTracker(dict(STARTUP))


# -- outside a transaction -------------------------------------------------------------------


def test_startup_values_are_the_initial_params_and_are_copied() -> None:
    startup = {"search_path": "s"}
    t = SettingsTracker(startup)
    startup["search_path"] = "changed"
    assert t.params == {"search_path": "s"} and t.startup == {"search_path": "s"}
    t.change("search_path", "x", False)
    assert t.startup == {"search_path": "s"}  # the startup copy is never touched


def test_change_outside_a_transaction_applies_at_once() -> None:
    t = tracker()
    t.change("search_path", "a", False)
    assert t.params == {**STARTUP, "search_path": "a"}
    assert t.effective() == t.params
    assert t.txn == []
    t.change("search_path", "b", False)
    assert t.params["search_path"] == "b"


def test_reset_to_startup_value_vs_removal() -> None:
    t = tracker()
    t.change("timezone", "Europe/Paris", False)
    t.change("search_path", "a", False)
    t.change("timezone", None, False)  # had a startup value: back to it
    t.change("search_path", None, False)  # had none: the server's default, i.e. not set
    assert t.params == STARTUP
    assert "search_path" not in t.params
    t.change("never_set", None, False)  # RESET of something never set is harmless
    assert t.params == STARTUP


def test_reset_all_outside_a_transaction() -> None:
    t = tracker()
    t.change("timezone", "Asia/Tokyo", False)
    t.change("search_path", "a", False)
    t.change("application_name", None, False)
    t.change(None, None, False)
    assert t.params == STARTUP


# -- inside a transaction ----------------------------------------------------------------------


def test_change_inside_a_transaction_waits_for_commit() -> None:
    t = tracker()
    t.change("search_path", "a", True)
    assert t.params == STARTUP  # not committed yet
    assert t.effective() == {**STARTUP, "search_path": "a"}
    assert t.effective() is not t.params
    done = t.commit()
    assert done == [("search_path", "a")]
    assert t.params == {**STARTUP, "search_path": "a"}
    assert t.txn == [] and t.savepoints == []


def test_rollback_discards_transaction_changes() -> None:
    t = tracker()
    t.change("search_path", "keep", False)
    t.change("search_path", "a", True)
    t.change("timezone", None, True)
    t.savepoint("s1")
    undone = t.rollback()
    assert undone == [("search_path", "a"), ("timezone", None)]
    assert t.params == {**STARTUP, "search_path": "keep"}
    assert t.effective() == t.params
    assert t.txn == [] and t.savepoints == []


def test_commit_applies_changes_in_order() -> None:
    t = tracker()
    t.change("search_path", "a", True)
    t.change("search_path", "b", True)
    t.change("timezone", "Asia/Tokyo", True)
    t.change("timezone", None, True)
    t.commit()
    assert t.params == {**STARTUP, "search_path": "b"}


def test_reset_all_inside_a_transaction() -> None:
    t = tracker()
    t.change("search_path", "a", False)
    t.change(None, None, True)
    assert t.effective() == STARTUP
    assert t.params["search_path"] == "a"
    t.change("work_mem", "8MB", True)
    assert t.effective() == {**STARTUP, "work_mem": "8MB"}
    t.commit()
    assert t.params == {**STARTUP, "work_mem": "8MB"}


def test_commit_and_rollback_with_nothing_pending() -> None:
    t = tracker()
    assert t.commit() == [] and t.rollback() == []
    assert t.params == STARTUP


# -- savepoints --------------------------------------------------------------------------------


def test_rollback_to_undoes_changes_since_the_savepoint_and_keeps_it() -> None:
    t = tracker()
    t.change("search_path", "a", True)
    t.savepoint("s1")
    t.change("search_path", "b", True)
    t.change("timezone", "Asia/Tokyo", True)
    assert t.rollback_to("s1") == [("search_path", "b"), ("timezone", "Asia/Tokyo")]
    assert t.effective() == {**STARTUP, "search_path": "a"}
    # The savepoint survives: a second ROLLBACK TO works again.
    t.change("search_path", "c", True)
    assert t.rollback_to("s1") == [("search_path", "c")]
    assert t.effective()["search_path"] == "a"
    t.commit()
    assert t.params == {**STARTUP, "search_path": "a"}


def test_nested_savepoints_rollback_to_outer_forgets_inner() -> None:
    t = tracker()
    t.savepoint("outer")
    t.change("search_path", "a", True)
    t.savepoint("inner")
    t.change("search_path", "b", True)
    t.rollback_to("outer")
    assert t.effective() == STARTUP
    assert [name for name, _ in t.savepoints] == ["outer"]
    # inner is gone: ROLLBACK TO it changes nothing (PostgreSQL would raise an error).
    t.change("search_path", "c", True)
    assert t.rollback_to("inner") == []
    assert t.effective()["search_path"] == "c"


def test_release_keeps_changes_and_drops_later_savepoints() -> None:
    t = tracker()
    t.savepoint("a")
    t.change("search_path", "x", True)
    t.savepoint("b")
    t.change("timezone", "Asia/Tokyo", True)
    t.release("a")
    assert t.savepoints == []
    assert t.effective() == {**STARTUP, "search_path": "x", "timezone": "Asia/Tokyo"}
    assert t.rollback_to("b") == []  # released with a
    t.commit()
    assert t.params == {**STARTUP, "search_path": "x", "timezone": "Asia/Tokyo"}


def test_release_inner_then_rollback_to_outer() -> None:
    t = tracker()
    t.savepoint("outer")
    t.change("search_path", "x", True)
    t.savepoint("inner")
    t.change("search_path", "y", True)
    t.release("inner")
    assert t.effective()["search_path"] == "y"
    t.rollback_to("outer")
    assert t.effective() == STARTUP


def test_same_savepoint_name_twice_refers_to_the_latest() -> None:
    t = tracker()
    t.savepoint("sp")
    t.change("search_path", "a", True)
    t.savepoint("sp")
    t.change("search_path", "b", True)
    t.rollback_to("sp")  # the second one
    assert t.effective()["search_path"] == "a"
    t.release("sp")  # releases the second one; the first is still there
    assert [name for name, _ in t.savepoints] == ["sp"]
    t.rollback_to("sp")  # the first one
    assert t.effective() == STARTUP


def test_savepoint_names_are_case_insensitive() -> None:
    t = tracker()
    t.savepoint("Sp")
    t.change("search_path", "a", True)
    t.rollback_to("SP")
    assert t.effective() == STARTUP


def test_unknown_savepoint_changes_nothing() -> None:
    t = tracker()
    t.change("search_path", "a", True)
    assert t.rollback_to("nope") == []
    t.release("nope")
    assert t.effective()["search_path"] == "a" and t.txn == [("search_path", "a")]


def test_reset_all_in_txn_rolled_back_to_savepoint() -> None:
    t = tracker()
    t.change("search_path", "a", False)
    t.savepoint("s")
    t.change(None, None, True)
    assert "search_path" not in t.effective()
    t.rollback_to("s")
    assert t.effective()["search_path"] == "a"


def test_reset_all_method_drops_everything() -> None:
    t = tracker()
    t.change("search_path", "a", False)
    t.change("timezone", "Asia/Tokyo", True)
    t.savepoint("s")
    t.reset_all()
    assert t.params == STARTUP and t.txn == [] and t.savepoints == []
    assert t.effective() == STARTUP
    t.commit()
    assert t.params == STARTUP


# -- a reference model of PostgreSQL -----------------------------------------------------------


@dataclass
class Model:
    """PostgreSQL's GUC behaviour with snapshots: each level remembers the values at its start."""

    startup: dict[str, str]
    session: dict[str, str] = field(default_factory=dict)
    current: dict[str, str] | None = None  # the open transaction's values
    savepoints: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.session = dict(self.startup)

    @property
    def in_txn(self) -> bool:
        return self.current is not None

    def visible(self) -> dict[str, str]:
        return self.current if self.current is not None else self.session

    def set(self, name: str, value: str | None) -> None:
        target = self.visible()
        if value is not None:
            target[name] = value
        elif name in self.startup:
            target[name] = self.startup[name]
        else:
            target.pop(name, None)

    def reset_all(self) -> None:
        target = self.visible()
        target.clear()
        target.update(self.startup)


NAMES = ("search_path", "timezone", "work_mem")
VALUES = ("a", "b", "c")
SAVEPOINTS = ("s1", "s2")

# Weighted towards transactions and savepoints, where the interesting cases are.
KINDS = (
    ["set"] * 4
    + ["reset"] * 2
    + ["reset_all"]
    + ["begin"] * 3
    + ["commit", "rollback"]
    + ["savepoint"] * 3
    + ["rollback_to"] * 2
    + ["release"] * 2
)


@st.composite
def op(draw: st.DrawFn) -> tuple[str, str | None, str | None]:
    kind = draw(st.sampled_from(KINDS))
    if kind == "set":
        return kind, draw(st.sampled_from(NAMES)), draw(st.sampled_from(VALUES))
    if kind == "reset":
        return kind, draw(st.sampled_from(NAMES)), None
    if kind in ("savepoint", "rollback_to", "release"):
        return kind, draw(st.sampled_from(SAVEPOINTS)), None
    return kind, None, None


@settings(max_examples=1500, deadline=None)
@given(
    startup=st.dictionaries(st.sampled_from(NAMES), st.sampled_from(("x", "y")), max_size=2),
    ops=st.lists(op(), min_size=4, max_size=50),
)
def test_tracker_matches_postgresql_model(
    startup: dict[str, str], ops: list[tuple[str, str | None, str | None]]
) -> None:
    t = SettingsTracker(startup)
    m = Model(dict(startup))
    for kind, name, value in ops:
        if kind == "set":
            assert name is not None
            t.change(name, value, m.in_txn)
            m.set(name, value)
        elif kind == "reset":
            assert name is not None
            t.change(name, None, m.in_txn)
            m.set(name, None)
        elif kind == "reset_all":
            t.change(None, None, m.in_txn)
            m.reset_all()
        elif kind == "begin":
            if not m.in_txn:  # BEGIN inside a transaction is only a warning
                m.current = dict(m.session)
        elif kind == "commit":
            if m.in_txn:
                assert m.current is not None
                t.commit()
                m.session, m.current, m.savepoints = m.current, None, []
        elif kind == "rollback":
            if m.in_txn:
                t.rollback()
                m.current, m.savepoints = None, []
        elif kind == "savepoint":
            if m.in_txn:  # outside a transaction it is an error, so never reaches the tracker
                assert name is not None
                t.savepoint(name)
                m.savepoints.append((name, dict(m.visible())))
        elif kind in ("rollback_to", "release"):
            assert name is not None
            idx = [i for i, (n, _) in enumerate(m.savepoints) if n == name]
            if not m.in_txn or not idx:
                continue  # an error in PostgreSQL: the request fails and nothing is tracked
            i = idx[-1]
            if kind == "rollback_to":
                t.rollback_to(name)
                m.current = dict(m.savepoints[i][1])
                del m.savepoints[i + 1 :]
            else:
                t.release(name)
                del m.savepoints[i:]
        assert t.params == m.session, (kind, name, value)
        assert t.effective() == m.visible(), (kind, name, value)
        assert t.startup == startup
        if not m.in_txn:
            assert t.txn == [] and t.savepoints == []
        else:
            assert [n for n, _ in t.savepoints] == [n for n, _ in m.savepoints]
