"""Where seed inputs and crashing inputs live.

Seeds are committed, one small file per input, under ``fuzz/corpus/<target>/``; crashes are
written under ``fuzz/crashes/`` (git-ignored), named after the target and the input's hash so
the same crash found twice is one file.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS_DIR = HERE / "corpus"
CRASH_DIR = HERE / "crashes"


def seed_dir(target: str) -> Path:
    return CORPUS_DIR / target


def seeds(target: str) -> list[tuple[str, bytes]]:
    """(file name, content) of every seed of ``target``, in name order."""
    directory = seed_dir(target)
    if not directory.is_dir():
        return []
    return [(p.name, p.read_bytes()) for p in sorted(directory.iterdir()) if p.is_file()]


def save_crash(target: str, data: bytes) -> Path:
    CRASH_DIR.mkdir(exist_ok=True)
    path = CRASH_DIR / f"{target}-{hashlib.sha1(data).hexdigest()[:16]}"
    path.write_bytes(data)
    return path


def relative(path: Path) -> str:
    """``path`` as a reader in the repository root would type it."""
    try:
        return str(path.resolve().relative_to(HERE.parent))
    except ValueError:
        return str(path)
