"""A per-grid lock: one ``grid run`` of a grid at a time.

The lock is the file ``<workdir>/grids/<grid>/lock``, created with ``O_CREAT | O_EXCL`` (atomic on a local or
NFSv3+ file system) and holding ``{"pid", "host", "started_at", "command"}``. A second ``grid run`` of the
same grid finds it and refuses with one line naming the holder. A lock is stale, and is taken over, when its
holder ran on this host and its pid is gone (or is now another program: a reused pid whose start time is later
than the lock); a lock held on another host cannot be checked from here, so the message says which file to
delete if that host no longer runs the grid. A lock is never taken, stale or free, while a cell process of
the grid is still alive on this host (``bench.dispatch.lifeline.live_cells``: a ``grid run`` killed with
kill -9 leaves its cells stopping for up to a second); the refusal names them.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path

from bench.errors import UserError
from bench.dispatch.lifeline import alive_since, live_cells


def lock_path(workdir: str | Path, grid: str) -> Path:
    return Path(workdir) / "grids" / grid / "lock"


def _holder(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _is_stale(holder: dict | None) -> bool:
    if holder is None:  # unreadable: a holder that died while writing it, or a foreign file
        return True
    if holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    return not isinstance(pid, int) or not alive_since(pid, float(holder.get("started_at", 0)))


def local_holder(workdir: str | Path, grid: str) -> int | None:
    """The pid of the live process on this host that holds the grid's lock, else None."""
    holder = _holder(lock_path(workdir, grid))
    if holder is None or holder.get("host") != socket.gethostname() or _is_stale(holder):
        return None
    return holder["pid"]


def _describe(holder: dict | None) -> str:
    if holder is None:
        return "an unknown process"
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("started_at", 0)))
    return f"pid {holder.get('pid')} on {holder.get('host')} (since {started}: {holder.get('command', '?')})"


def _refuse_if_cells_run(workdir, grid: str, why: str) -> None:
    cells = live_cells(workdir, grid)
    if cells:
        listed = ", ".join(f"{rid} (pid {pid})" for rid, pid in sorted(cells.items()))
        raise UserError(f"grid {grid!r}: {why}, but {len(cells)} of its cells still run: {listed}; wait for "
                        f"them to stop or `grid cancel` it")


@contextlib.contextmanager
def grid_lock(workdir: str | Path, grid: str, log=print):
    """Hold the grid's lock for the ``with`` block; raise UserError when another live process holds it."""
    path = lock_path(workdir, grid)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": time.time(),
          "command": " ".join(["python -m bench", *sys.argv[1:]])[:200]}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if not _is_stale(holder):
                hint = "" if holder and holder.get("host") == me["host"] else \
                    f"; if that host no longer runs it, delete {path}"
                raise UserError(f"grid {grid!r} is already being run by {_describe(holder)}: wait for it or "
                                f"`grid cancel` it{hint}") from None
            _refuse_if_cells_run(workdir, grid, f"its last run, {_describe(holder)}, is gone")
            log(f"taking over the stale lock of grid {grid!r} ({_describe(holder)} is gone)")
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        try:
            _refuse_if_cells_run(workdir, grid, "it has no lock")
        except UserError:
            path.unlink()
            raise
        break
    else:
        raise UserError(f"cannot take the lock {path} of grid {grid!r}: another process keeps recreating it")
    try:
        yield path
    finally:
        if (_holder(path) or {}).get("pid") == me["pid"]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
