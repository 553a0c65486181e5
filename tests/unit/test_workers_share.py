"""`[general] workers`: the key itself, each worker's share of the sizes, client ids that name
their worker, per-worker file names, and the framing of the private channel."""

from __future__ import annotations

import json
import struct
from typing import Any

import pytest

from pgdog_ev.config import ConfigError, load_config_text
from pgdog_ev.workers.channel import MAX_MESSAGE, Channel, ChannelError, Decoder, encode
from pgdog_ev.workers.share import client_id, owner, share, worker_config, worker_path

DB = """
[[databases]]
name = "app"
host = "127.0.0.1"
pool_size = 7
min_pool_size = 3
max_db_client_connections = 5

[[databases]]
name = "app"
host = "127.0.0.2"
role = "replica"
pool_size_replica = 2
"""
ONE_DB = """
[[databases]]
name = "app"
host = "127.0.0.1"
"""
USERS = """
[[users]]
name = "alice"
database = "app"
password = "pw"
max_user_client_connections = 9
"""


def load(general: str, databases: str = DB, users: str = USERS):  # type: ignore[no-untyped-def]
    return load_config_text("[general]\n" + general + databases, users, entropy=lambda n: bytes(n))


# --- the key ---------------------------------------------------------------------------------


def test_workers_defaults_to_one_process() -> None:
    assert load("").general.workers == 1


@pytest.mark.parametrize(("value", "detail"), [
    ("0", "must be >= 1, got 0"),
    ("-2", "must be >= 1"),
    ("129", "must be <= 128"),
    ('"2"', "expected an integer"),
    ("2.0", "expected an integer"),
])
def test_bad_workers_name_the_file_and_key(value: str, detail: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(f"workers = {value}\n")
    assert info.value.table == "[general]" and info.value.key == "workers"
    assert info.value.file == "pgdog.toml"
    assert detail in str(info.value)


def test_input_capture_needs_one_process() -> None:
    with pytest.raises(ConfigError) as info:
        load("workers = 2\ncapture_inputs = true\n")
    assert info.value.key == "capture_inputs"
    assert "workers = 1" in str(info.value)
    assert load("workers = 1\ncapture_inputs = true\n").general.capture_inputs


# --- shares ---------------------------------------------------------------------------------


@pytest.mark.parametrize("count", range(1, 9))
@pytest.mark.parametrize("total", [*range(0, 40), 97, 1000])
def test_shares_add_up_and_round_up_only_to_one(total: int, count: int) -> None:
    parts = [share(total, i, count) for i in range(count)]
    exact = [share(total, i, count, at_least_one=False) for i in range(count)]
    assert sum(exact) == total  # type: ignore[arg-type]
    assert max(exact) - min(exact) <= 1  # type: ignore[type-var,operator]
    assert exact == sorted(exact, reverse=True)  # type: ignore[type-var]  # the remainder goes to the first
    if total >= count:
        assert parts == exact
    elif total > 0:
        assert parts == [1] * count  # a worker without a server could serve nobody
    else:
        assert parts == [0] * count


def test_share_of_unlimited_is_unlimited_and_indexes_are_checked() -> None:
    assert share(None, 0, 3) is None
    assert share(10, 0, 3) == 4 and share(10, 1, 3) == 3 and share(10, 2, 3) == 3
    with pytest.raises(ValueError):
        share(10, 3, 3)


def test_worker_config_divides_every_size_and_limit() -> None:
    config = load("default_pool_size = 10\nmin_pool_size = 2\nmax_client_conn = 100\n"
                  "max_user_client_connections = 4\n")
    assert worker_config(config, 0, 1) is config
    views = [worker_config(config, i, 3) for i in range(3)]
    assert [v.general.default_pool_size for v in views] == [4, 3, 3]
    assert [v.general.min_pool_size for v in views] == [1, 1, 0]  # split exactly: 0 is a fine minimum
    assert [v.general.max_client_conn for v in views] == [34, 33, 33]
    assert [v.general.max_user_client_connections for v in views] == [2, 1, 1]
    assert [v.general.max_db_client_connections for v in views] == [None] * 3
    assert [v.databases[0].pool_size for v in views] == [3, 2, 2]
    assert [v.databases[0].min_pool_size for v in views] == [1, 1, 1]
    assert [v.databases[0].max_db_client_connections for v in views] == [2, 2, 1]
    assert [v.databases[1].pool_size_replica for v in views] == [1, 1, 1]  # 2 rounds up to 1 each
    assert [v.users[0].max_user_client_connections for v in views] == [3, 3, 3]
    # The digest names the files, the same in every worker; the rest is untouched.
    assert all(v.digest == config.digest for v in views)
    assert all(v.general.workers == config.general.workers for v in views)
    assert all(v.databases[0].host == "127.0.0.1" and v.users[0].passwords == ("pw",) for v in views)


def test_a_share_of_min_pool_size_never_exceeds_the_share_of_the_pool() -> None:
    for size in range(1, 12):
        for low in range(0, size + 1):
            config = load(f"default_pool_size = {size}\nmin_pool_size = {low}\n", ONE_DB)
            for count in (2, 3, 5):
                total_low = 0
                for index in range(count):
                    view = worker_config(config, index, count)
                    settings = view.pool_settings(view.users[0], view.databases[0])
                    assert settings.pool_size >= 1 and settings.min_pool_size <= settings.pool_size
                    total_low += settings.min_pool_size
                assert total_low == low


# --- ids and files ------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 7, 8])
def test_a_client_id_names_its_worker(count: int) -> None:
    ids = [client_id(counter, index, count) for counter in range(1, 200) for index in range(count)]
    assert len(set(ids)) == len(ids)  # no two workers hand out the same key
    for counter in range(1, 200):
        for index in range(count):
            key_pid = client_id(counter, index, count) & 0x7FFFFFFF  # what BackendKeyData carries
            assert owner(key_pid, count) == index
    assert [client_id(c, 0, 1) for c in (1, 2, 3)] == [1, 2, 3]  # one process: as before


def test_worker_paths() -> None:
    assert worker_path("pgdog-ev.evlog", 1) == "pgdog-ev.w1.evlog"
    assert worker_path("/var/log/pgdog-ev/pgdog-ev.evlog", 0) == "/var/log/pgdog-ev/pgdog-ev.w0.evlog"
    assert worker_path("/var/log/events", 3) == "/var/log/events.w3"
    assert worker_path("logs.d/.evlog", 2) == "logs.d/.evlog.w2"


# --- the channel ------------------------------------------------------------------------------------


def test_messages_survive_any_chunking() -> None:
    messages = [{"op": "cancel", "pid": 7, "secret": "00ff"}, {"op": "answer", "id": 1, "result": {"up": True}},
                {"op": "ask", "request": {"show": "pools", "args": []}, "x": float("nan")}]
    stream = b"".join(encode(m) for m in messages)
    for size in (1, 2, 3, 7, len(stream)):
        decoder = Decoder()
        out = []
        for start in range(0, len(stream), size):
            out += decoder.feed(stream[start:start + size])
        assert [m["op"] for m in out] == ["cancel", "answer", "ask"]
        assert out[0] == messages[0] and out[1] == messages[1]
        assert out[2]["x"] != out[2]["x"]  # NaN (a metric "unknown") crosses too


@pytest.mark.parametrize("frame", [
    struct.pack(">I", MAX_MESSAGE + 1),
    struct.pack(">I", 3) + b"{{{",
    struct.pack(">I", 2) + b"[]",
    struct.pack(">I", 9) + json.dumps({"op": 1}).encode(),
    struct.pack(">I", 2) + b"\xff\xfe",
    struct.pack(">I", 5000) + b"[" * 5000,
])
def test_garbage_stops_the_decoder_after_the_messages_before_it(frame: bytes) -> None:
    """The good message before a bad frame arrives whether or not they came in one read; after
    the bad frame nothing more does."""
    good = encode({"op": "stop"})
    for reads in ([good + frame + good], [good, frame, good]):
        decoder = Decoder()
        out = [m for data in reads for m in decoder.feed(data)]
        assert out == [{"op": "stop"}], reads
        assert isinstance(decoder.error, ChannelError)


class _Transport:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_a_message_its_handler_cannot_take_does_not_drop_the_next() -> None:
    """A handler raising on one message (a field missing) costs that message only; a bad frame
    after good ones closes the channel (a close, not an abort: their replies still go out)."""
    got: list[str] = []

    def on_message(message: dict[str, Any]) -> None:
        got.append(message["op"])
        int(message["pid"])

    channel = Channel("test", on_message, lambda: None)
    transport = _Transport()
    channel.connection_made(transport)
    channel.data_received(memoryview(encode({"op": "cancel"}) + encode({"op": "cancel", "pid": 3})))
    assert got == ["cancel", "cancel"] and not transport.closed
    channel.data_received(memoryview(encode({"op": "last", "pid": 1}) + struct.pack(">I", 2) + b"[]"))
    assert got == ["cancel", "cancel", "last"] and transport.closed


def test_a_lone_surrogate_crosses_the_channel() -> None:
    """JSON allows "\\ud800"; the encoder must not fail on what the decoder accepts."""
    frame = encode({"op": "answer", "text": "\ud800x"})
    (message,) = Decoder().feed(frame)
    assert message == {"op": "answer", "text": "\ud800x"} and encode(message) == frame
