"""CPU time and memory of a proxy, read from /proc.

A proxy may be one process (PgBouncer, pgdog-ev today) or a parent with worker processes
(pgdog-ev with `[general] workers`), so every figure here is taken over the whole process tree:
the root and all its descendants, plus what the root has already collected from children that
exited (cutime/cstime), so a worker that dies during a run still counts. The kernel here has no
/proc/PID/task/*/children, so descendants are found by scanning every process's parent pid.
"""

from __future__ import annotations

import os

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (which may itself hold spaces)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def descendants(root: int) -> list[int]:
    """Every live process below `root` (children, grandchildren, ...), by scanning parent pids."""
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(name))[1])
        except (OSError, IndexError, ValueError):
            continue  # exited while we looked
        parents.setdefault(ppid, []).append(int(name))
    out: list[int] = []
    todo = [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def process_tree(root: int) -> list[int]:
    """`root` and its descendants: the processes a proxy's figures are summed over."""
    return [root, *descendants(root)]


def tree_cpu_seconds(root: int | None) -> float:
    """utime + stime of the tree, plus the root's reaped children (0 for None: a direct run)."""
    if root is None:
        return 0.0
    ticks = 0
    for i, pid in enumerate(process_tree(root)):
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        # Fields after the name start at field 3 (state); utime is field 14, stime 15,
        # cutime 16, cstime 17 (1-based, proc(5)).
        ticks += int(fields[11]) + int(fields[12])
        if i == 0:
            ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (VmRSS), in bytes; 0 if it has gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def tree_rss_bytes(root: int) -> int:
    """RSS summed over the tree (shared pages of forked workers count once per process)."""
    return sum(rss_bytes(pid) for pid in process_tree(root))


def open_files_limit(pid: int) -> int | None:
    """The soft RLIMIT_NOFILE of a running process, from /proc/PID/limits (None if unreadable)."""
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    value = line.split()[3]
                    return None if value == "unlimited" else int(value)
    except OSError:
        return None
    return None
