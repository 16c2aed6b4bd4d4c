"""The commands ``grid run``, ``grid status`` and ``grid cancel``.

``grid run``: check the options (``--executor``, ``--cluster``, ``--device``, ``--parallel``,
``--cells-per-gpu``), then the pre-flight (``bench.dispatch.preflight``: the datasets' files, the pretrained
weights of ``init = "timm"`` cells, the device; the grid's cell count and GPU-hour estimate; every problem one
line, and nothing is submitted), then submit (``bench.dispatch.submit``). ``--dry-run`` prints the plan and
the pre-flight and submits nothing. Local and debug cells are waited for, showing the grid's progress
(``bench.dispatch.progress.GridProgress``); SLURM ones only with ``--wait``. Then the status table is printed;
the exit status is 0 when every cell is done or diverged.

``grid status`` (``bench.dispatch.shipped_grids.cli_grid_status``): the table of
``bench.dispatch.status.grid_status`` and a count per state.
``grid cancel``: cancel every queued or running job of the grid and wait (up to 60 s) until the cluster shows
them ended; when cell processes of a local grid are alive, its ``grid run`` (the lock's holder, on this host)
and then every one of them get SIGTERM and are waited for (they record themselves interrupted).
"""

from __future__ import annotations

import os
import sys
import time

from tabulate import tabulate

from bench.errors import UserError
from bench.run import records
from bench.dispatch.executors import create_executor, get_executor
from bench.dispatch.grid import Grid, load_grid
from bench.dispatch.jobs import load_jobs
from bench.dispatch.lifeline import live_cells, stop_cells
from bench.dispatch.lock import local_holder
from bench.dispatch.plugins import plugin_specs
from bench.dispatch.preflight import preflight, raise_preflight
from bench.dispatch.progress import GridProgress
from bench.dispatch.status import (FINAL_CELL_STATES, all_finished, grid_status, print_table, remote_executors,
                                   state_summary)
from bench.dispatch.submit import pending_cells, submit_grid

POLL_SECONDS = float(os.environ.get("PROXBENCH_POLL_S", "2"))
CANCEL_WAIT_S = 60
RECENT_S = 600  # a job submitted this recently may not be shown by the cluster yet


def cli_grid_run(args) -> int:
    """``grid run``: check the options, then the pre-flight (``preflight``; with ``--dry-run`` after the plan),
    then submit; local and debug cells are waited for (with ``GridProgress``), remote ones with ``--wait``."""
    grid = load_grid(args.name)
    kind = get_executor(args.executor)
    profile = kind.read_profile(args.cluster)
    device, parallel, cells_per_gpu = args.device, args.parallel, args.cells_per_gpu
    create_executor(args.executor, device=device, profile=profile, parallel=parallel,
                    cells_per_gpu=cells_per_gpu).check_options()
    if not kind.remote and args.wait is False:
        raise UserError(f"--no-wait: the {args.executor} executor runs the cells as children of this command, "
                        "which waits for them (Ctrl-C stops them; run the grid again to resume); to submit and "
                        "return at once use --executor slurm")
    if args.dry_run:
        _print_plan(grid, args, profile)
    problems = preflight(grid, pending_cells(grid, args.results), executor=args.executor, device=device,
                         profile=profile, data_root=args.data_root, parallel=parallel, cells_per_gpu=cells_per_gpu,
                         results=args.results)
    raise_preflight(problems)
    if args.dry_run:
        return 0
    submit_grid(grid, args.executor, workdir=args.workdir, results=args.results, data_root=args.data_root,
                device=device or "cpu", profile=profile, parallel=parallel, cells_per_gpu=cells_per_gpu,
                plugins=plugin_specs(getattr(args, "plugin", ())))
    if kind.remote and args.wait:
        return _wait_remote(grid, args)
    if not kind.remote:
        rows = grid_status(grid, args.workdir, args.results)
        print_table(rows)
        return 0 if all_finished(rows) else 1
    return 0


def _wait_remote(grid: Grid, args) -> int:
    """Poll until every cell is final (done/diverged/failed/timed-out/cancelled or never submitted), showing
    the grid's progress (``GridProgress`` on stderr); then print the status table."""
    progress = GridProgress(grid, args.workdir)
    try:
        while True:
            rows = grid_status(grid, args.workdir, args.results)
            progress.update({r["run_id"]: r["state"] for r in rows})
            if all(r["state"] in FINAL_CELL_STATES or (r["state"] == "pending" and not r["job"]) for r in rows):
                break
            time.sleep(POLL_SECONDS)
    finally:
        progress.close()
    print_table(rows)
    return 0 if all_finished(rows) else 1


def _print_plan(grid: Grid, args, profile) -> None:
    done = records.finished_ids(args.results, grid.name)
    rows = [(c.run_id, c.stage, c.parent or "", "done" if c.run_id in done else "submit", c.label) for c in grid.cells]
    print(tabulate(rows, headers=["run id", "stage", "parent", "action", "cell"], tablefmt="github"))
    n = sum(1 for r in rows if r[3] == "submit")
    print(f"\n{len(rows)} cells, {n} to submit, {len(grid.stages())} stage(s); executor {args.executor}"
          + (f", profile {profile['path']}" if profile else "") + " (dry run: nothing submitted)")


def cli_grid_cancel(args) -> int:
    """Cancel every queued or running job of the grid (remote executors), then wait (up to 60 s) until the
    cluster shows them ended."""
    grid = load_grid(args.name)
    jobs = load_jobs(args.workdir, grid.name, args.results)
    done = records.finished_ids(args.results, grid.name)
    recent = {j["job_id"] for j in jobs.values() if time.time() - j.get("submitted_at", 0) < RECENT_S}
    cancelled = 0
    for name, ex in remote_executors(jobs).items():
        # a packed job (cells_per_gpu) is the job of several cells: cancelled and counted once
        ids = sorted({j["job_id"] for rid, j in jobs.items() if j.get("executor") == name and rid not in done})
        if ids:
            cancelled += len(_cancel(ex, ids, recent))
    cells = live_cells(args.workdir, grid.name)
    if cells:  # a local grid: its grid run first (it stops its cells itself and releases the lock), then orphans
        holder = local_holder(args.workdir, grid.name)
        stop_cells([holder] if holder else [], wait_s=CANCEL_WAIT_S)
        stop_cells(live_cells(args.workdir, grid.name).values(), wait_s=CANCEL_WAIT_S)
        cancelled += len(cells)
    print(f"cancelled {cancelled} job(s) of grid {grid.name}", file=sys.stderr)
    return 0


def _cancel(ex, ids: list[str], recent: set[str]) -> list[str]:
    """Cancel what is queued or running, or just submitted and not shown by the cluster yet; wait until the
    cluster shows each one ended (its accounting lags its queue by a few seconds). Returns the ids cancelled."""
    ex.check_reachable()
    states = ex.job_table(ids)
    live = [j for j in ids if (j in states and ex.is_active(states[j][0])) or (j not in states and j in recent)]
    if not live:
        return live
    ex.cancel(live)
    deadline = time.monotonic() + CANCEL_WAIT_S
    while time.monotonic() < deadline:
        states = ex.job_table(live)
        left = [j for j in live if j not in states or ex.is_active(states[j][0])]  # not shown: not over yet
        if not left:
            break
        time.sleep(1)
    else:
        print(f"warning: still shown by SLURM after 60 s: {', '.join(left)}", file=sys.stderr)
    return live

