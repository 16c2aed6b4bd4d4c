"""Where a run's files live: the run directory under the work directory and the record under the results.

Under ``<workdir>/runs/<run_id>/`` (the run directory): ``checkpoint.pt`` (the training state, rewritten
atomically after every epoch), ``progress.json`` (``{"epoch": epochs done, "epochs": epochs in all}``),
``steps.jsonl`` (the per-step metrics) and ``tensorboard/`` (TensorBoard event files, ``--logger
tensorboard``). Under ``<results>/runs/<grid>/``: the run record ``<run_id>.json``. A grid name is a folder
name in both trees (``results/runs/NAME``, ``work/grids/NAME``), so ``check_name`` refuses unsafe ones.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.errors import UserError

RUNS_DIR = "runs"  # under the work directory: one folder per run id; under the results: one per grid
CHECKPOINT_FILE = "checkpoint.pt"
PROGRESS_FILE = "progress.json"
STEPS_FILE = "steps.jsonl"
TENSORBOARD_DIR = "tensorboard"

NAME_CHARS = "A-Za-z0-9._+-"
NAME = re.compile(f"[{NAME_CHARS}]+")


def check_name(name: str, where: str, what: str = "") -> None:
    """A grid name becomes a folder name (results/runs/NAME, work/grids/NAME): refuse anything unsafe.

    ``what`` follows the name in the message, e.g. "(the file name without .toml)"."""
    if not name or name.startswith(".") or not NAME.fullmatch(name):
        raise UserError(f"{where}: the grid name {name!r}{' ' + what if what else ''} cannot be a folder name under "
                        f"results/runs/ and work/grids/: it must be non-empty, must not start with '.', and may use "
                        f"only the characters {NAME_CHARS}")


def run_dir(workdir: str | Path, run_id: str) -> Path:
    """``<workdir>/runs/<run_id>``: the folder of one run's checkpoint and logs."""
    return Path(workdir) / RUNS_DIR / run_id


def checkpoint_path(workdir: str | Path, run_id: str) -> Path:
    return run_dir(workdir, run_id) / CHECKPOINT_FILE


def progress_path(workdir: str | Path, run_id: str) -> Path:
    return run_dir(workdir, run_id) / PROGRESS_FILE


def steps_path(workdir: str | Path, run_id: str) -> Path:
    return run_dir(workdir, run_id) / STEPS_FILE


def records_dir(results: str | Path, grid: str) -> Path:
    """``<results>/runs/<grid>``: the folder of a grid's run records."""
    return Path(results) / RUNS_DIR / grid


def record_path(results: str | Path, grid: str, run_id: str) -> Path:
    return records_dir(results, grid) / f"{run_id}.json"
