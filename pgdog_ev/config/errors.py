"""The one exception type configuration problems surface as.

Operators fix configuration by opening a file and finding a table and a key, so every error carries
those three coordinates both as attributes (for programs, e.g. the admin database turning a bad
``SET`` into an ErrorResponse) and in its text (for people reading a log or a terminal).
"""

from __future__ import annotations


class ConfigError(Exception):
    """A configuration input that cannot be accepted.

    ``file`` is the file path as the user gave it, or a pseudo-source such as ``--database-url``,
    ``environment`` or ``SET``; ``table`` is a TOML table label such as ``[general]`` or
    ``[[users]] #2 (name "bob")``; ``key`` is the offending key. Any of them may be ``None`` when
    the problem is not that specific (a file that does not exist has no table).
    """

    file: str | None
    table: str | None
    key: str | None
    detail: str

    def __init__(
        self,
        detail: str,
        *,
        file: str | None = None,
        table: str | None = None,
        key: str | None = None,
        key_in_prefix: bool = True,
    ) -> None:
        self.file = file
        self.table = table
        self.key = key
        self.detail = detail
        super().__init__(_compose(file, table, key if key_in_prefix else None, detail))

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[object, ...]:
        # Keep the coordinates when the error crosses a process boundary (pytest-xdist, workers).
        return (_rebuild, (str(self), self.file, self.table, self.key, self.detail))


def _rebuild(text: str, file: str | None, table: str | None, key: str | None, detail: str) -> ConfigError:
    error = ConfigError(detail, file=file, table=table, key=key)
    error.args = (text,)
    return error


def _compose(file: str | None, table: str | None, key: str | None, detail: str) -> str:
    where = " ".join(part for part in (table, key) if part)
    prefix = ": ".join(part for part in (file, where) if part)
    return f"{prefix}: {detail}" if prefix else detail
