"""The state of a grid's cells (``grid status``): one row per cell, and the table and summary printed.

A cell's record decides its state (done, diverged, failed), unless it is a failed record older than the
cell's latest submission (a resubmitted cell shows its new job's state). Without a record, a cell whose job
went to a remote executor (SLURM) shows what the cluster says of the job (queued, running, timed-out,
cancelled, failed, or submitted while the cluster does not show it yet); a local cell shows what its cell
file says (``bench.dispatch.lifeline.cell_state``: running, or interrupted when a signal or the end of its
``grid run`` stopped it); any other cell is pending.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from tabulate import tabulate

from bench.run import layout, records
from bench.dispatch.executors import create_executor, list_executors
from bench.dispatch.cells import Grid
from bench.dispatch.jobs import load_jobs
from bench.dispatch.lifeline import cell_state
from bench.dispatch.progress import epochs_done

FINAL_CELL_STATES = ("done", "diverged", "failed", "timed-out", "cancelled")
COLUMNS = ("run_id", "cell", "state", "job", "epochs", "acc", "error")
HEADERS = ["run id", "cell", "state", "job", "epochs", "acc", "error"]


def remote_executors(jobs: dict) -> dict:
    """{executor name: executor} of the remote executors that jobs.json entries ``jobs`` name."""
    names = {j.get("executor") for j in jobs.values()} & set(list_executors())
    found = {name: create_executor(name) for name in sorted(names)}
    return {name: ex for name, ex in found.items() if ex.remote}


def grid_status(grid: Grid, workdir: str = "work", results: str = "results") -> list[dict]:
    """One row per cell: run_id, cell, state (pending/queued/running/done/failed/diverged/timed-out/cancelled/
    submitted/interrupted), job, epochs, acc, error (see the module doc)."""
    jobs = load_jobs(workdir, grid.name, results)
    remote = remote_executors(jobs)
    tables = {name: ex.job_table([j["job_id"] for j in jobs.values() if j.get("executor") == name])
              for name, ex in remote.items()}
    rows = []
    for cell in grid.cells:
        path = layout.record_path(results, grid.name, cell.run_id)
        record, _ = records.read_record(path)
        job = jobs.get(cell.run_id, {})
        if record is not None and record["status"] == "failed" and job.get("submitted_at", 0) > _mtime(path):
            record = None  # resubmitted since it failed
        progress = epochs_done(workdir, cell.run_id)
        row = {"run_id": cell.run_id, "cell": cell.label, "state": "pending", "job": job.get("job_id", ""),
               "epochs": f"{progress}/{cell.config['epochs']}", "acc": "", "error": ""}
        if record is not None:
            row["state"] = record["status"]
            # the record says how far the run got (its checkpoints may be gone: a fresh clone ships records only)
            row["epochs"] = f"{max(progress, record_epochs(record))}/{cell.config['epochs']}"
            row["acc"] = "" if record["final"].get("acc") is None else f"{record['final']['acc']:.2f}"
            row["error"] = record.get("error") or ""
        elif job.get("executor") in remote:
            name = job["executor"]
            row["state"], row["error"] = remote[name].cell_state(job, tables[name].get(job["job_id"]), cell.parent)
        else:
            row["state"] = cell_state(workdir, grid.name, cell.run_id) or "pending"
        rows.append(row)
    return rows


def record_epochs(record: dict) -> int:
    """The epochs a record's run trained: ``final.epochs_done``, else the length of its history."""
    done = (record.get("final") or {}).get("epochs_done")
    return int(done) if isinstance(done, int) else len(record.get("history") or [])


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def all_finished(rows: list[dict]) -> bool:
    """Did every cell end done or diverged?"""
    return all(r["state"] in ("done", "diverged") for r in rows)


def print_table(rows: list[dict]) -> None:
    print(tabulate([[r[k] for k in COLUMNS] for r in rows], headers=HEADERS, tablefmt="github"))


def state_summary(rows: list[dict]) -> str:
    """'2 done, 1 running': how many cells are in each state."""
    return ", ".join(f"{n} {s}" for s, n in sorted(Counter(r["state"] for r in rows).items()))
