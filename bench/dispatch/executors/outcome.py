"""How the executors that run cells themselves (local, debug) follow them: the cells' states for the
``GridProgress`` line, and the end of each cell's job, logged as one line ``  RUN_ID (LABEL): STATUS``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.dispatch.jobs import last_error_line

if TYPE_CHECKING:
    from bench.dispatch.grid import Cell, Grid


def initial_states(grid: Grid, todo: list[Cell]) -> dict[str, str]:
    """'pending' for the cells to run, 'done' for the others (they have a finished record)."""
    waiting = {c.run_id for c in todo}
    return {c.run_id: "pending" if c.run_id in waiting else "done" for c in grid.cells}


def finish(job, cell: Cell, log, progress=None) -> str:
    """Wait for a job's result (a debug job trains now), log the cell's end, return its state: the record's
    status (done/diverged), or failed. ``progress``: a ``GridProgress`` whose line is cleared first."""
    if progress:
        progress.clear()
    try:
        status = job.result()
        log(f"  {cell.run_id} ({cell.label}): {status}")
        return status if status in ("done", "diverged") else "failed"
    except Exception as exc:  # noqa: BLE001 - a failed cell does not stop the grid
        last = str(exc).strip().splitlines()
        log(f"  {cell.run_id} ({cell.label}): failed: {last_error_line(last)}")
        return "failed"
