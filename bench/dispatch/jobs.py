"""What ``grid run`` remembers of the jobs it submitted: ``<workdir>/grids/<grid>/jobs.json``, one entry per
cell, ``{run_id: {"job_id", "executor", "folder", "label", "submitted_at"}}`` (``folder``: the submitit
folder of the job's logs), and the last error line of a job's log.

The file is merged, never replaced: a submission rewrites the entries of its own cells and keeps the others.
A corrupt file (not JSON, or not a table of tables) is reported in one warning on stderr, kept as
``jobs.json.corrupt`` (nothing written is lost), and rebuilt from the grid's records: one entry per recorded
cell, without a job id (``"rebuilt": true``); the job ids of cells that have no record are lost, so those
cells show as pending.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from bench.run.jsonfile import write_json_atomic
from bench.run.layout import records_dir
from bench.run.records import read_record


def jobs_path(workdir: str | Path, grid: str) -> Path:
    return Path(workdir) / "grids" / grid / "jobs.json"


def load_jobs(workdir: str | Path, grid: str, results: str | Path | None = None) -> dict:
    """The grid's jobs.json as a dict ({} when missing; rebuilt from the records under ``results`` when
    corrupt, see the module doc)."""
    path = jobs_path(workdir, grid)
    if not path.is_file():
        return {}
    try:
        jobs = json.loads(path.read_text())
        why = None if isinstance(jobs, dict) and all(isinstance(j, dict) for j in jobs.values()) else \
            "not a table of jobs"
    except (ValueError, UnicodeDecodeError) as exc:
        why = f"not JSON: {' '.join(str(exc).split())[:80]}"
    if why is None:
        return jobs
    return _rebuild(path, grid, why, results)


def _rebuild(path: Path, grid: str, why: str, results) -> dict:
    jobs = {}
    if results is not None:
        for record_file in sorted(records_dir(results, grid).glob("*.json")):
            record, _ = read_record(record_file)
            if record is not None and record.get("grid") == grid:
                jobs[str(record["run_id"])] = {"job_id": "", "executor": "", "folder": "", "label": "",
                                               "submitted_at": 0.0, "rebuilt": True}
    try:
        os.replace(path, path.with_name(path.name + ".corrupt"))
        write_json_atomic(jobs, path)
        done = f"kept as {path.name}.corrupt and rebuilt from {len(jobs)} record(s)"
    except OSError as exc:
        done = f"could not be set aside ({exc.strerror}): read as {len(jobs)} record(s)"
    print(f"warning: {path} is corrupt ({why}): {done}; the job ids of cells without a record are lost",
          file=sys.stderr)
    return jobs


class JobBook:
    """The jobs of one grid as a submission records them: ``jobs`` (the file's entries, updated in memory by
    ``remember``) and ``save`` (merge them into the file, atomically)."""

    def __init__(self, workdir: str | Path, grid: str, results: str | Path | None = None):
        self.workdir = workdir
        self.grid = grid
        self.jobs = load_jobs(workdir, grid, results)

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
