"""Live progress of a grid's run: cells done / running / failed / pending, training images per second and an
ETA (``GridProgress``). A run's progress is read from the files ``bench.run.train`` writes in its folder
``<workdir>/runs/<run_id>/``: the epochs done of ``progress.json`` (``epochs_done``) and the last step of the
steps log (``layout.STEPS_FILE``), combined into the images trained so far by ``images_done``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

from bench import data

from bench.run import layout
from bench.dispatch.cells import Grid

PROGRESS_SECONDS = float(os.environ.get("PROXBENCH_PROGRESS_S", "30"))
_BUCKET = {"done": "done", "diverged": "done", "running": "running", "failed": "failed", "timed-out": "failed",
           "cancelled": "failed"}  # any other state (pending, queued, submitted) counts as pending


def images_per_epoch(cfg: dict) -> int:
    """Training images of one epoch of a cell: full batches of the training split (or its ``subset``)."""
    info = data.dataset_info(cfg["dataset"], cfg["data_options"])
    n = info.train_size if cfg["subset"] is None else min(int(cfg["subset"]), info.train_size)
    return n // cfg["batch_size"] * cfg["batch_size"]


def epochs_done(workdir: str | Path, run_id: str) -> int:
    """Epochs a run has finished: ``epoch`` of its ``<workdir>/runs/<run_id>/progress.json`` (0: none)."""
    path = layout.progress_path(workdir, run_id)
    try:
        return int(json.loads(path.read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


def images_done(workdir: str | Path, run_id: str, cfg: dict, per_epoch: int | None = None) -> int:
    """Training images a run has gone through, from its folder ``<workdir>/runs/<run_id>/``: the epochs of
    ``progress.json`` times the images of an epoch, or, when further, the last step of ``steps.jsonl`` times
    the batch size; at most the run's total."""
    per_epoch = images_per_epoch(cfg) if per_epoch is None else per_epoch
    images = epochs_done(workdir, run_id) * per_epoch
    step = _last_step(layout.steps_path(workdir, run_id))
    return min(max(images, step * cfg["batch_size"]), cfg["epochs"] * per_epoch)


def _last_step(path: Path) -> int:
    """``step`` of the last complete line of a steps.jsonl (0: none), reading only the file's tail."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8192))
            tail = fh.read()
    except OSError:
        return 0
    for line in reversed(tail.split(b"\n")[:-1]):  # the part after the last newline is not complete
        try:
            step = json.loads(line).get("step")
        except (ValueError, AttributeError):
            continue
        if isinstance(step, int) and not isinstance(step, bool):
            return step
    return 0


class GridProgress:
    """The live progress of a grid: cells done / running / failed / pending, images per second, and an ETA.

    ``update(states)`` takes ``{run_id: state}`` (``grid status``'s states; done and diverged count as done,
    failed, timed-out and cancelled as failed, anything but running as pending). On a terminal
    (``stream.isatty()``) every update rewrites one line in place (``\\r``); otherwise a plain line is printed
    at the first update, whenever a cell ends, and at least every ``interval`` seconds (default
    ``$PROXBENCH_PROGRESS_S`` or 30) while updates come; ``close()`` prints the last state.

    Images/s: the training images of this session (``images_done`` of each cell now, less what it had at
    the start) over the seconds since the start, so job start-up, evaluation and idle waves count. ETA: the
    images the running and pending cells still have to train, at that rate ("?" until a first image).
    """

    def __init__(self, grid: Grid, workdir: str | Path, *, stream=None, interval: float | None = None,
                 clock=time.monotonic):
        self.name = grid.name
        self.workdir = workdir
        self.configs = {c.run_id: c.config for c in grid.cells}
        self.per_epoch = {rid: images_per_epoch(cfg) for rid, cfg in self.configs.items()}
        self.total = {rid: cfg["epochs"] * self.per_epoch[rid] for rid, cfg in self.configs.items()}
        self.images = {rid: self._read(rid) for rid in self.configs}
        self.base = dict(self.images)
        self.states = {rid: "pending" for rid in self.configs}
        self.stream = sys.stderr if stream is None else stream
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self.interval = PROGRESS_SECONDS if interval is None else interval
        self.clock = clock
        self.started = clock()
        self.printed_at: float | None = None
        self.printed = ""
        self.drawn = False

    def _read(self, rid: str) -> int:
        return images_done(self.workdir, rid, self.configs[rid], self.per_epoch[rid])

    def update(self, states: dict[str, str]) -> None:
        """Take the cells' states (cells not named keep theirs), re-read the images of the running cells and of
        those whose state changed, and show the line (see the class doc)."""
        ended = False
        for rid, state in states.items():
            if rid not in self.configs:
                continue
            old = self.states[rid]
            if state == "running" or state != old:
                self.images[rid] = self._read(rid)
            if _BUCKET.get(state) in ("done", "failed") and _BUCKET.get(old) not in ("done", "failed"):
                ended = True
            self.states[rid] = state
        self._show(force=ended)

    def counts(self) -> dict[str, int]:
        found = Counter(_BUCKET.get(s, "pending") for s in self.states.values())
        return {k: found.get(k, 0) for k in ("done", "running", "failed", "pending")}

    def rate(self) -> float | None:
        """Training images per second of this session (None before the first image)."""
        elapsed = self.clock() - self.started
        images = sum(max(0, self.images[r] - self.base[r]) for r in self.configs)
        return images / elapsed if images > 0 and elapsed > 0 else None

    def eta(self) -> float | None:
        """Seconds until the running and pending cells are done at ``rate()`` (0 when none is left)."""
        left = sum(max(0, self.total[r] - self.images[r]) for r, s in self.states.items()
                   if _BUCKET.get(s, "pending") in ("running", "pending"))
        if left == 0:
            return 0.0
        rate = self.rate()
        return left / rate if rate else None

    def line(self) -> str:
        n = self.counts()
        rate, eta = self.rate(), self.eta()
        return (f"[{_duration(self.clock() - self.started)}] grid {self.name}: {n['done']}/{len(self.states)} done, "
                f"{n['running']} running, {n['failed']} failed, {n['pending']} pending | "
                f"{'?' if rate is None else _count(rate)} images/s | ETA {'?' if eta is None else _duration(eta)}")

    def _show(self, force: bool = False) -> None:
        line = self.line()
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K")
            self.drawn = True
        elif force or self.printed_at is None or self.clock() - self.printed_at >= self.interval:
            self.stream.write(line + "\n")
            self.printed_at, self.printed = self.clock(), line
        else:
            return
        self.stream.flush()

    def clear(self) -> None:
        """Wipe the terminal line (before other output); the next update draws it again."""
        if self.tty and self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.drawn = False

    def close(self) -> None:
        """Show the last state: the terminal line is kept (a newline ends it); a plain line unless the last
        one printed says the same."""
        line = self.line()
        if self.tty:
            self.stream.write("\r" + line + "\x1b[K\n")
            self.drawn = False
        elif line != self.printed:
            self.stream.write(line + "\n")
            self.printed = line
        else:
            return
        self.stream.flush()


def _duration(seconds: float) -> str:
    """'45s', '12m 05s', '3h 20m', '2d 04h'."""
    s = int(round(max(0.0, seconds)))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m {s:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h {m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d {h:02d}h"


def _count(value: float) -> str:
    """'812', '9.21k', '1.30M'."""
    if value < 999.5:
        return f"{value:.0f}"
    scaled, suffix = (value / 1e3, "k") if value < 999_500 else (value / 1e6, "M")
    return f"{scaled:.3g}{suffix}"
