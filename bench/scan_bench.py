"""What stepping over runs of passed-through messages saves: MessageScanner.feed on results of
1 to 10,000 DataRows, with the C twin, the Python twin and no run-skipping (message by message).

    python -m bench.scan_bench

Prints µs per feed and ns per message; the scanner's C_THRESHOLD (bytes left in a chunk below
which it does not try a run) comes from where the call stops paying for itself.
"""

from __future__ import annotations

import timeit

from pgdog_ev.wire import backend as be
from pgdog_ev.wire import passrun
from pgdog_ev.wire.scanner import MessageScanner, action_table

# The server-side table of the proxy: ReadyForQuery and friends are read, DataRow passes.
TABLE = action_table(header=b"12GW", body=b"ZSEA")


def result(rows: int) -> bytes:
    """A SELECT's response without its ReadyForQuery: RowDescription, rows, CommandComplete."""
    out = bytearray(be.row_description([be.Field("abalance", type_oid=23, type_size=4)]))
    row = be.data_row(["12345"])
    for _ in range(rows):
        out += row
    out += be.command_complete(f"SELECT {rows}")
    return bytes(out)


def main() -> None:
    skips: dict[str, passrun.SkipPassed | None] = {"message by message": None, "python twin": passrun.skip_passed_py}
    if passrun.skip_passed_c is not None:
        skips["C twin"] = passrun.skip_passed_c
    print(f"{'rows':>6} {'bytes':>7}  " + "  ".join(f"{n:>24}" for n in skips))
    for rows in (1, 3, 10, 30, 100, 1000, 10000):
        data = memoryview(result(rows))
        messages = rows + 2
        cells = []
        for skip in skips.values():
            scanner = MessageScanner(TABLE, lambda view: None, lambda t, b: None)
            if skip is None:
                scanner.skip_min = 1 << 62
            else:
                scanner.skip, scanner.skip_min = skip, 0
            number = max(10, 200000 // messages)
            best = min(timeit.repeat(lambda s=scanner, d=data: s.feed(d), number=number, repeat=5)) / number
            cells.append(f"{best * 1e6:9.2f} µs {best * 1e9 / messages:7.0f} ns/msg")
        print(f"{rows:>6} {len(data):>7}  " + "  ".join(f"{c:>24}" for c in cells))


if __name__ == "__main__":
    main()
