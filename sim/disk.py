"""A virtual disk that forgets what was not fsynced when its node crashes.

Durability is the property the "no acknowledged commit is lost" invariant is
about, so the disk models exactly the one thing a real disk does that matters
here: bytes appended but not yet fsynced live in a page cache that a crash
discards. What survives a crash of unsynced data is drawn from the world's
PRNG (a prefix of the unsynced appends, possibly none), the same way a real
kernel may or may not have written some dirty pages back before the power went.
"""

from __future__ import annotations

from collections.abc import Callable


class VirtualFile:
    """One append-only file: ``synced`` bytes are durable, ``pending`` appends are not yet."""

    __slots__ = ("pending", "synced")

    def __init__(self) -> None:
        self.synced = bytearray()
        self.pending: list[bytes] = []

    def contents(self) -> bytes:
        return bytes(self.synced) + b"".join(self.pending)


class VirtualDisk:
    """Files by name; ``crash()`` drops unsynced appends (a random prefix may survive)."""

    def __init__(self, choose: Callable[[int], int] | None = None) -> None:
        # choose(n) returns an int in [0, n]: how many unsynced appends reach the platter.
        self._choose = choose if choose is not None else (lambda n: 0)
        self.files: dict[str, VirtualFile] = {}
        self.fsyncs = 0
        self.crashes = 0

    def _file(self, name: str) -> VirtualFile:
        f = self.files.get(name)
        if f is None:
            f = self.files[name] = VirtualFile()
        return f

    def append(self, name: str, data: bytes) -> None:
        if data:
            self._file(name).pending.append(bytes(data))

    def fsync(self, name: str) -> None:
        f = self._file(name)
        if f.pending:
            f.synced += b"".join(f.pending)
            f.pending.clear()
        self.fsyncs += 1

    def read(self, name: str) -> bytes:
        """What a running process sees: durable bytes plus its own unsynced appends."""
        f = self.files.get(name)
        return b"" if f is None else f.contents()

    def durable(self, name: str) -> bytes:
        """What would survive a crash right now if no unsynced append reached the platter."""
        f = self.files.get(name)
        return b"" if f is None else bytes(f.synced)

    def truncate(self, name: str, size: int) -> None:
        """Cut a file back to ``size`` bytes (recovery discarding a torn tail); durable at once."""
        f = self._file(name)
        data = f.contents()[:size]
        f.synced = bytearray(data)
        f.pending.clear()

    def crash(self) -> None:
        """Power loss: each file keeps its synced bytes and a random prefix of its unsynced appends."""
        self.crashes += 1
        for name in sorted(self.files):
            f = self.files[name]
            if f.pending:
                keep = self._choose(len(f.pending))
                for chunk in f.pending[:keep]:
                    f.synced += chunk
                f.pending.clear()
