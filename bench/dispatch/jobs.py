"""What ``grid run`` remembers of the jobs it submitted: ``<workdir>/grids/<grid>/jobs.json``, one entry per
cell, ``{run_id: {"job_id", "executor", "folder", "label", "submitted_at"}}`` (``folder``: the submitit
folder of the job's logs), and the last error line of a job's log.

The file is merged, never replaced: a submission rewrites the entries of its own cells and keeps the others.
An unreadable file reads as empty.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from bench.run.jsonfile import write_json_atomic


def jobs_path(workdir: str | Path, grid: str) -> Path:
    return Path(workdir) / "grids" / grid / "jobs.json"


def load_jobs(workdir: str | Path, grid: str) -> dict:
    """The grid's jobs.json as a dict ({} when missing or unreadable)."""
    path = jobs_path(workdir, grid)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {}


class JobBook:
    """The jobs of one grid as a submission records them: ``jobs`` (the file's entries, updated in memory by
    ``remember``) and ``save`` (merge them into the file, atomically)."""

    def __init__(self, workdir: str | Path, grid: str):
        self.workdir = workdir
        self.grid = grid
        self.jobs = load_jobs(workdir, grid)

    def get(self, run_id: str) -> dict:
        """The entry of a cell ({} when it has none)."""
        return self.jobs.get(run_id, {})

    def remember(self, cell, job_id: str, executor: str, folder: Path) -> None:
        """Record the job of a ``Cell`` (kept in memory until ``save``)."""
        self.jobs[cell.run_id] = {"job_id": str(job_id), "executor": executor, "folder": str(Path(folder).resolve()),
                                  "label": cell.label, "submitted_at": time.time()}

    def save(self) -> None:
        """Merge ``jobs`` into the file: entries of other submissions stay, this one's win for its cells."""
        write_json_atomic({**load_jobs(self.workdir, self.grid), **self.jobs},
                                  jobs_path(self.workdir, self.grid))


def last_error_line(lines: list[str]) -> str:
    """The last non-blank line that does not start with a space (a traceback's frames do), else the last
    line, else ``?``: where a job's log or exception says why it failed."""
    for line in reversed(lines):
        if line.strip() and not line.startswith(" "):
            return line.strip()
    return lines[-1].strip() if lines else "?"


def job_error(job: dict) -> str:
    """Last error line of a failed job's stderr log (submitit's <folder>/<id>_0_log.err); '' when none."""
    for path in sorted(Path(job["folder"]).glob(f"{job['job_id']}_*_log.err")):
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        if lines:
            return last_error_line(lines)
    return ""
