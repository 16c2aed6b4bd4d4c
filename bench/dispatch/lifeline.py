"""A local grid's cells live and die with its ``grid run`` (Linux; the local executor).

Each cell process of a local grid keeps a file ``<workdir>/grids/<grid>/cells/<run_id>.json``:
``{"pid", "started_at", "state"}``, state ``running`` while it trains and ``interrupted`` once a signal stopped
it (the file is removed when the cell ends on its own: its record says how). From it:

* ``guard_cell``, in the cell process: SIGTERM and SIGINT raise ``CellInterrupted`` (the run stops; its last
  epoch checkpoint is kept, and the next ``grid run`` resumes from it); ``PR_SET_PDEATHSIG`` (prctl) sends
  SIGTERM when the cell's parent dies, and a watcher thread sends it when the ``grid run`` process (the
  ``guardian``: pid and start time) is gone, kill -9 included. So no cell outlives its grid run by more than
  ``WATCH_S`` seconds.
* ``live_cells``: the cells of a grid whose process is still alive (a lock is never taken over while one
  runs); ``cell_state``: ``running``, or ``interrupted`` for a cell whose process was stopped or died, for
  ``grid status``.

A pid is trusted only with its start time (``alive_since``): a pid reused by another program is not the cell.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import threading
import time
from pathlib import Path

from bench.run.jsonfile import write_json_atomic

WATCH_S = 0.5
PR_SET_PDEATHSIG = 1


class CellInterrupted(BaseException):
    """A cell process was told to stop (SIGTERM, SIGINT, or its grid run is gone)."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def cells_dir(workdir: str | Path, grid: str) -> Path:
    return Path(workdir) / "grids" / grid / "cells"


def alive_since(pid: int, started_at: float) -> bool:
    """Is ``pid`` a live process that started no later than ``started_at`` (i.e. not a reused pid)?"""
    if not _exists(pid):
        return False
    try:  # Linux: the process's start time, to tell a reused pid apart
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK") <= started_at + 1.0
    except (OSError, ValueError, IndexError, StopIteration):
        return True


def me() -> tuple[int, float]:
    """(pid, start time) of this process, as a guardian for the cells it starts."""
    return os.getpid(), time.time()


def _mark(path: Path, state: str) -> None:
    write_json_atomic({"pid": os.getpid(), "started_at": time.time(), "state": state}, path)


@contextlib.contextmanager
def guard_cell(workdir: str | Path, grid: str, run_id: str, guardian: tuple[int, float] | None):
    """Run a local cell under the rules of the module doc; ``guardian``: (pid, start time) of the grid run.
    A ``CellInterrupted`` leaves the cell file ``interrupted`` and is raised on."""
    path = cells_dir(workdir, grid) / f"{run_id}.json"
    _mark(path, "running")
    previous = {s: signal.signal(s, _interrupt) for s in (signal.SIGTERM, signal.SIGINT)}
    _die_with_parent()
    stop = threading.Event()
    if guardian is not None:
        threading.Thread(target=_watch, args=(guardian, stop), daemon=True).start()
    try:
        yield
    except CellInterrupted:
        _mark(path, "interrupted")
        raise
    except BaseException:  # a failure: its record says so, the cell file goes
        path.unlink(missing_ok=True)
        raise
    else:
        path.unlink(missing_ok=True)
    finally:
        stop.set()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _interrupt(signum, frame) -> None:
    for other in (signal.SIGTERM, signal.SIGINT):  # a second signal (Ctrl-C and its grid run's SIGTERM) waits
        signal.signal(other, signal.SIG_IGN)
    raise CellInterrupted(signum)


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        parent = os.getppid()
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)


def _watch(guardian: tuple[int, float], stop: threading.Event) -> None:
    pid, started_at = guardian
    while not stop.wait(WATCH_S):
        if not alive_since(pid, started_at):
            os.kill(os.getpid(), signal.SIGTERM)
            return


def _read(path: Path) -> dict | None:
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return entry if isinstance(entry, dict) and isinstance(entry.get("pid"), int) else None


def live_cells(workdir: str | Path, grid: str) -> dict[str, int]:
    """{run_id: pid} of the grid's cell processes still alive on this host."""
    found = {}
    for path in sorted(cells_dir(workdir, grid).glob("*.json")):
        entry = _read(path)
        if entry and entry.get("state") == "running" and alive_since(entry["pid"], float(entry["started_at"])):
            found[path.stem] = entry["pid"]
    return found


def cell_state(workdir: str | Path, grid: str, run_id: str) -> str | None:
    """``running`` (its process is alive), ``interrupted`` (stopped by a signal, or gone while it ran) or None
    (no cell file: never started, or it ended on its own)."""
    entry = _read(cells_dir(workdir, grid) / f"{run_id}.json")
    if entry is None:
        return None
    if entry.get("state") == "running" and alive_since(entry["pid"], float(entry["started_at"])):
        return "running"
    return "interrupted"


def stop_cells(pids, wait_s: float = 30.0) -> list[int]:
    """SIGTERM each pid, then wait up to ``wait_s`` seconds for them to end (SIGKILL after that); the pids
    that were alive."""
    sent = []
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
            sent.append(pid)
    deadline = time.monotonic() + wait_s
    for pid in sent:
        while _exists(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if _exists(pid):
                os.kill(pid, signal.SIGKILL)
    return sent


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):  # a zombie (not reaped by its parent yet) has ended
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True
