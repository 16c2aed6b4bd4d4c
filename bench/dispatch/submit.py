"""Send a grid's unfinished cells to an executor (``bench.dispatch.executors``): ``submit_grid``.

Cells with a finished record (done or diverged) are skipped; with a remote executor (SLURM), cells whose
job is still queued or running are skipped too. The grid's lock (``bench.dispatch.lock``) is held
meanwhile, so a second ``grid run`` of the grid refuses to start. Submitted job ids are kept in
``<workdir>/grids/<grid>/jobs.json`` (``bench.dispatch.jobs``); submitit's folder of this submission is
``<workdir>/submitit/<grid>/<UTC time stamp>``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from bench.run import records
from bench.dispatch.cell_job import CellArgs
from bench.dispatch.executors import Batch, create_executor
from bench.dispatch.grid import Cell, Grid
from bench.dispatch.jobs import JobBook
from bench.dispatch.lock import grid_lock
from bench.dispatch.progress import GridProgress


def pending_cells(grid: Grid, results: str) -> list[Cell]:
    """The cells without a finished (done or diverged) record."""
    done = records.finished_ids(results, grid.name)
    return [c for c in grid.cells if c.run_id not in done]


def submit_grid(grid: Grid, executor: str, *, workdir: str = "work", results: str = "results",
                data_root: str | None = None, device: str = "cpu", profile: dict | None = None,
                parallel: int | None = None, cells_per_gpu: int | None = None, n_gpus: int | None = None,
                plugins: tuple = (), progress: bool | GridProgress = True, log=print) -> dict:
    """Submit every unfinished cell; returns {run_id: job id}. Waits for the cells of an executor that is not
    remote (local, debug) to end.

    ``device``: local: cpu (``parallel`` cells at a time), cuda (every GPU, ``cells_per_gpu`` cells on each;
    ``n_gpus`` assumes that many GPUs instead of counting them) or cuda:N (``local_placement``); debug: the
    device of every cell; slurm: ignored, the ``profile`` (required) decides. ``progress``: a ``GridProgress``
    for local/debug cells (True: one on stderr; False: none). ``plugins``: ``plugin_specs`` of the
    ``--plugin`` modules, imported by every job."""
    ex = create_executor(executor, device=device, profile=profile, parallel=parallel, cells_per_gpu=cells_per_gpu,
                         n_gpus=n_gpus)
    ex.prepare()
    with grid_lock(workdir, grid.name, log=log):
        todo = pending_cells(grid, results)
        book = JobBook(workdir, grid.name, results)
        if ex.remote:
            mine = [c for c in todo if book.get(c.run_id).get("executor") == ex.name]
            states = ex.job_table([book.get(c.run_id)["job_id"] for c in mine])
            queued = {c.run_id for c in mine if ex.is_active(states.get(book.get(c.run_id)["job_id"], ("", ""))[0])}
            if queued:
                log(f"{len(queued)} cell(s) already queued or running: not resubmitted")
            todo = [c for c in todo if c.run_id not in queued]
        skipped = len(grid.cells) - len(todo)
        log(f"grid {grid.name}: {len(grid.cells)} cells, {skipped} finished or queued, {len(todo)} to submit "
            f"({ex.name})")
        if not todo:
            return {}
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
        folder = Path(workdir) / "submitit" / grid.name / stamp
        # absolute paths: a job may start in another directory (sbatch) or on another node with the same mounts
        args = CellArgs(grid=grid.name, workdir=str(Path(workdir).resolve()), results=str(Path(results).resolve()),
                        data_root=str(Path(data_root).resolve()) if data_root else None, device=device,
                        plugins=tuple(plugins))
        if ex.remote or progress is False:
            progress = None
        elif progress is True:
            progress = GridProgress(grid, workdir)
        return ex.submit(Batch(grid, todo, book, folder, args, progress, log))
