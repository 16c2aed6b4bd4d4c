"""Send a grid's cells to an executor through submitit, and report or cancel them: the commands ``grid run``,
``grid status`` and ``grid cancel``.

* ``local``: one subprocess per cell (submitit's LocalExecutor), in waves. On the CPU (``--device cpu``, the
  default) a wave is ``--parallel`` cells, each with ``cores // cells in the wave`` torch threads. With
  ``--device cuda`` a wave spreads its cells over every visible GPU, ``--cells-per-gpu`` per GPU (default 1),
  and each cell trains on its own ``cuda:i``; ``--device cuda:N`` puts every cell on GPU N (the waves:
  ``bench.dispatch.placement``). The running jobs of a wave are polled together; the next wave starts when the wave is
  over.
* ``debug``: every cell in this process, one after the other (submitit's DebugExecutor), on ``--device``.
* ``slurm``: one job array per stage; fine-tune cells depend (``afterok``) on their fp parent's job. Jobs
  are checkpointable: on timeout or preemption submitit requeues them, and a requeued job resumes from its
  last epoch checkpoint in the work directory (read when the job starts, never from the pickled call). The
  cluster profile (``--cluster``, required) decides the device: cuda when it asks for GPUs.

Before anything is submitted (and in ``--dry-run``) the pre-flight (``bench.dispatch.preflight``) checks what the cells
to run need: their datasets' files, the pretrained weights of ``init = "timm"`` cells, the device; it prints
the grid's cell count and GPU-hour estimate. Every problem is listed, one line each, and nothing is submitted.

While local and debug cells run (and under ``grid run --executor slurm --wait``) ``bench.dispatch.progress.GridProgress``
shows the cells done / running / failed / pending, the images per second and an ETA for the grid.

Cells with a finished record (done or diverged) are skipped; on SLURM, cells already queued or running are
skipped too. Submitted job ids are kept in ``<workdir>/grids/<grid>/jobs.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import submitit
from tabulate import tabulate

from bench.dispatch import cluster

from bench.run import records
from bench.run import config as configs
from bench.errors import UserError
from bench.dispatch.grid import Cell, Grid, load_grid
from bench.dispatch.lock import grid_lock
from bench.dispatch.placement import check_run_options, cuda_devices, device_problem, local_placement, parse_device, use_gpu
from bench.dispatch.preflight import preflight, raise_preflight
from bench.dispatch.progress import GridProgress, epochs_done

POLL_SECONDS = float(os.environ.get("PROXBENCH_POLL_S", "2"))
# SLURM state of a cell's job (when it has no record) -> the state `grid status` shows
SLURM_TO_CELL = {"PENDING": "queued", "REQUEUED": "queued", "REQUEUE_HOLD": "queued", "REQUEUE_FED": "queued",
                 "PREEMPTED": "queued", "SUSPENDED": "queued", "STOPPED": "queued", "CONFIGURING": "running",
                 "RUNNING": "running", "COMPLETING": "running", "SIGNALING": "running", "STAGE_OUT": "running",
                 "RESIZING": "running", "TIMEOUT": "timed-out", "CANCELLED": "cancelled", "FAILED": "failed",
                 "NODE_FAIL": "failed", "OUT_OF_MEMORY": "failed", "BOOT_FAIL": "failed", "DEADLINE": "failed",
                 "COMPLETED": "failed"}  # COMPLETED without a record: the job ended without writing one
# SLURM states of a job that is not over yet (squeue's and sacct's names)
ACTIVE_STATES = {state for state, cell in SLURM_TO_CELL.items() if cell in ("queued", "running")}
FINAL_CELL_STATES = ("done", "diverged", "failed", "timed-out", "cancelled")


class CellJob(submitit.helpers.Checkpointable):
    """The callable a job runs: train one cell (resuming from its checkpoint if there is one).

    ``checkpoint`` (called by submitit on timeout/preemption, SIGUSR2) resubmits the same call; the arguments
    carry only the config, paths and plugin modules, and the training state is read from the work directory
    at start. ``plugins`` are ``(module, import root)`` pairs: the job imports them before it builds the
    method, so a method registered by ``--plugin`` works in every executor. ``device`` goes to
    ``train.execute``; a ``cuda:i`` that exists also becomes the process's current CUDA device, so that what
    CUDA places without a device (its context, pinned memory) lands on GPU i too.

    Under SLURM, SIGTERM stops the run at once (submitit itself ignores it): SLURM sends it when it cancels,
    requeues or preempts the job, and would otherwise let the run go on training and writing checkpoints for
    KillWait seconds. Nothing is lost: the next start resumes from the last epoch checkpoint. The exception
    is submitit's own requeue: on SIGUSR2 submitit calls ``checkpoint`` and then ``scontrol requeue``, and
    SLURM's SIGTERM for that requeue may arrive before submitit is done. ``checkpoint`` therefore hands
    SIGTERM back to submitit (which ignores it) before the requeue starts; submitit exits the job itself.
    """

    def __call__(self, cfg: dict, grid: str, workdir: str, results: str, data_root: str | None, device: str,
                 threads: int | None = None, plugins: tuple = ()) -> str:
        import signal

        import torch

        from bench.run import train

        import_plugins(plugins)
        if threads:
            torch.set_num_threads(threads)
        previous = None
        if os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
            previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
            _SIGTERM_BEFORE_JOB[:] = [previous]
        try:
            use_gpu(device, torch)
            record = train.execute(cfg, grid=grid, workdir=workdir, results=results, device=device,
                                   data_root=data_root)
        except BaseException as exc:  # record the failure for `grid status`, then let the job fail
            if isinstance(exc, (KeyboardInterrupt, SystemExit)) or _is_signal_exit(exc):
                raise
            _write_failed(cfg, grid, results, exc)
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        return record["status"]

    def checkpoint(self, *args, **kwargs):
        """Called by submitit's SIGUSR2 handler right before it requeues the job: from here on, SIGTERM is
        submitit's again (ignored), so SLURM's SIGTERM for the requeue cannot cut the handler short."""
        import signal

        if _SIGTERM_BEFORE_JOB:
            signal.signal(signal.SIGTERM, _SIGTERM_BEFORE_JOB[0])
        return super().checkpoint(*args, **kwargs)


# the SIGTERM handler a SLURM job had before CellJob replaced it (submitit's "bypass"); kept outside the
# CellJob instance because submitit pickles that instance when it requeues
_SIGTERM_BEFORE_JOB: list = []


def plugin_specs(modules) -> tuple[tuple[str, str | None], ...]:
    """``(module, import root)`` for each imported plugin module: the folder a job process must put on
    ``sys.path`` to import it (None for an installed module), since a job may start elsewhere."""
    specs = []
    for name in modules:
        module = sys.modules.get(name)
        origin = getattr(module, "__file__", None)
        root = None
        if origin:
            path = Path(origin).resolve()
            depth = name.count(".") + (1 if path.name == "__init__.py" else 0)
            root = str(path.parents[depth])
        specs.append((name, root))
    return tuple(specs)


def import_plugins(specs) -> None:
    """Import the plugin modules of ``plugin_specs`` in a job process (their roots go on sys.path)."""
    import methods

    for _, root in specs:
        if root and root not in sys.path:
            sys.path.append(root)
    methods.load_plugins([name for name, _ in specs])


def _stop_on_sigterm(signum, frame) -> None:
    print("SIGTERM: SLURM cancels, requeues or preempts this job; stopping (a restart resumes from the last "
          "epoch checkpoint)", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)


def _is_signal_exit(exc: BaseException) -> bool:
    return type(exc).__name__ in {"JobPreemptedError"}


def _write_failed(cfg: dict, grid: str, results: str, exc: BaseException) -> None:
    message = " ".join(str(exc).split())
    last = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    record = records.make_record(configs.run_id(cfg), grid, cfg, status="failed", history=[], final={},
                                 device="?", wall_seconds=0.0, error=last)
    records.write_record(record, results)


def _jobs_file(workdir: str | Path, grid: str) -> Path:
    return Path(workdir) / "grids" / grid / "jobs.json"


def load_jobs(workdir: str | Path, grid: str) -> dict:
    path = _jobs_file(workdir, grid)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError:
        return {}


def _save_jobs(workdir: str | Path, grid: str, jobs: dict) -> None:
    """Merge ``jobs`` into the file: entries of other submissions stay, this one's win for its cells."""
    records.write_json_atomic({**load_jobs(workdir, grid), **jobs}, _jobs_file(workdir, grid))


def pending_cells(grid: Grid, results: str) -> list[Cell]:
    done = records.finished_ids(results, grid.name)
    return [c for c in grid.cells if c.run_id not in done]


def submit_grid(grid: Grid, executor: str, *, workdir: str = "work", results: str = "results",
                data_root: str | None = None, device: str = "cpu", profile: dict | None = None,
                parallel: int | None = None, cells_per_gpu: int | None = None, n_gpus: int | None = None,
                plugins: tuple = (), progress: bool | GridProgress = True, log=print) -> dict:
    """Submit every unfinished cell; returns {run_id: job id}. Waits for local/debug cells to end.

    Holds the grid's lock (``bench.dispatch.lock``) meanwhile: a second ``grid run`` of the grid refuses to start.
    ``device``: local: cpu (``parallel`` cells at a time), cuda (every GPU, ``cells_per_gpu`` cells on each;
    ``n_gpus`` assumes that many GPUs instead of counting them) or cuda:N (``local_placement``); debug: the
    device of every cell; slurm: ignored, the ``profile`` (required) decides. ``progress``: a ``GridProgress``
    for local/debug cells (True: one on stderr; False: none). ``plugins``: ``plugin_specs`` of the
    ``--plugin`` modules, imported by every job."""
    placement = None
    if executor == "slurm":
        if profile is None:
            raise UserError(f"executor 'slurm' needs a cluster profile (--cluster; shipped: "
                            f"{', '.join(cluster.shipped_profiles())})")
        cluster.check_reachable()  # before the lock: an unreachable SLURM leaves nothing behind
    elif executor == "local":
        placement = local_placement(device, parallel=parallel, cells_per_gpu=cells_per_gpu, n_gpus=n_gpus)
    elif executor == "debug" and parse_device(device)[0] == "cuda":
        problem = device_problem(device, *cuda_devices())
        if problem:
            raise UserError(problem)
    with grid_lock(workdir, grid.name, log=log):
        return _submit_locked(grid, executor, workdir=workdir, results=results, data_root=data_root,
                              device=device, profile=profile, placement=placement, plugins=plugins,
                              progress=progress, log=log)


def _submit_locked(grid: Grid, executor: str, *, workdir, results, data_root, device, profile, placement, plugins,
                   progress, log) -> dict:
    todo = pending_cells(grid, results)
    jobs = load_jobs(workdir, grid.name)
    if executor == "slurm":
        states = cluster.job_states([jobs[c.run_id]["job_id"] for c in todo
                                     if jobs.get(c.run_id, {}).get("executor") == "slurm"])
        queued = {c.run_id for c in todo if jobs.get(c.run_id, {}).get("executor") == "slurm"
                  and states.get(jobs[c.run_id]["job_id"]) in ACTIVE_STATES}
        if queued:
            log(f"{len(queued)} cell(s) already queued or running: not resubmitted")
        todo = [c for c in todo if c.run_id not in queued]
    skipped = len(grid.cells) - len(todo)
    log(f"grid {grid.name}: {len(grid.cells)} cells, {skipped} finished or queued, {len(todo)} to submit "
        f"({executor})")
    if not todo:
        return {}
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    folder = Path(workdir) / "submitit" / grid.name / stamp
    # absolute paths: a job may start in another directory (sbatch) or on another node with the same mounts
    data_root = str(Path(data_root).resolve()) if data_root else None
    args = (grid.name, str(Path(workdir).resolve()), str(Path(results).resolve()), data_root, device)
    save = lambda: _save_jobs(workdir, grid.name, jobs)  # noqa: E731
    if executor == "slurm":
        return _submit_slurm(grid, todo, jobs, folder, args, profile, log, save=save, plugins=plugins)
    if progress is True:
        progress = GridProgress(grid, workdir)
    elif progress is False:
        progress = None
    run = _run_debug if executor == "debug" else _run_local
    submitted = run(grid, todo, jobs, folder, args, placement, plugins, progress, log, save)
    save()
    return submitted


def _run_debug(grid, todo, jobs, folder, args, placement, plugins, progress, log, save) -> dict:
    """Every cell in this process, one after the other, fp parents first, on the device in ``args``."""
    ex = submitit.DebugExecutor(folder=folder)
    submitted: dict[str, str] = {}
    states = _initial_states(grid, todo)
    try:
        for cell in sorted(todo, key=lambda c: c.stage):
            job = ex.submit(CellJob(), cell.config, *args, plugins=plugins)
            submitted[cell.run_id] = job.job_id
            _remember(jobs, cell, job.job_id, "debug", folder)
            save()
            states[cell.run_id] = "running"
            if progress:
                progress.update(states)
            states[cell.run_id] = _finish(job, cell, log, progress)  # trains here
            if progress:
                progress.update(states)
    finally:
        if progress:
            progress.close()
    return submitted


def _run_local(grid, todo, jobs, folder, args, placement, plugins, progress, log, save) -> dict:
    """One subprocess per cell, stage by stage, in the waves of ``placement``; each cell gets its wave's
    device (``args``' device is replaced) and ``cores // wave size`` torch threads. The running jobs of a
    wave are polled every ``POLL_SECONDS``; each ending cell is logged as it ends. On an exception (Ctrl-C)
    the running jobs are cancelled (they resume from their last checkpoint when the grid is run again)."""
    ex = submitit.LocalExecutor(folder=folder)
    ex.update_parameters(timeout_min=24 * 60)
    submitted: dict[str, str] = {}
    states = _initial_states(grid, todo)
    running: dict[str, tuple[Cell, object]] = {}
    try:
        for stage in sorted({c.stage for c in todo}):
            cells = [c for c in todo if c.stage == stage]
            start = 0
            for devices in placement.waves(len(cells)):
                wave = cells[start:start + len(devices)]
                start += len(devices)
                threads = max(1, (os.cpu_count() or 1) // len(wave))  # a lone cell gets every core
                for cell, device in zip(wave, devices):
                    job = ex.submit(CellJob(), cell.config, *args[:-1], device, threads, plugins=plugins)
                    submitted[cell.run_id] = job.job_id
                    _remember(jobs, cell, job.job_id, "local", folder)
                    running[cell.run_id] = (cell, job)
                    states[cell.run_id] = "running"
                save()
                while running:
                    if progress:
                        progress.update(states)
                    time.sleep(POLL_SECONDS)
                    for rid, (cell, job) in list(running.items()):
                        if job.done():
                            del running[rid]
                            states[rid] = _finish(job, cell, log, progress)
                if progress:
                    progress.update(states)
    except BaseException:
        for _, job in running.values():
            job.cancel()
        raise
    finally:
        if progress:
            progress.close()
    return submitted


def _initial_states(grid: Grid, todo: list[Cell]) -> dict[str, str]:
    """'pending' for the cells to run, 'done' for the others (they have a finished record)."""
    waiting = {c.run_id for c in todo}
    return {c.run_id: "pending" if c.run_id in waiting else "done" for c in grid.cells}


def _remember(jobs: dict, cell: Cell, job_id: str, executor: str, folder: Path) -> None:
    jobs[cell.run_id] = {"job_id": str(job_id), "executor": executor, "folder": str(Path(folder).resolve()),
                         "label": cell.label, "submitted_at": time.time()}


def _finish(job, cell: Cell, log, progress: GridProgress | None = None) -> str:
    """Wait for a job's result (a debug job trains now), log the cell's end, return its state: the record's
    status (done/diverged), or failed."""
    if progress:
        progress.clear()
    try:
        status = job.result()
        log(f"  {cell.run_id} ({cell.label}): {status}")
        return status if status in ("done", "diverged") else "failed"
    except Exception as exc:  # noqa: BLE001 - a failed cell does not stop the grid
        last = str(exc).strip().splitlines()
        log(f"  {cell.run_id} ({cell.label}): failed: {_last_error_line(last)}")
        return "failed"


def _last_error_line(lines: list[str]) -> str:
    for line in reversed(lines):
        if line.strip() and not line.startswith(" "):
            return line.strip()
    return lines[-1].strip() if lines else "?"


def _submit_slurm(grid: Grid, todo: list[Cell], jobs: dict, folder: Path, args: tuple, profile: dict, log,
                  save=lambda: None, plugins: tuple = ()) -> dict:
    """One job array per stage; a fine-tune array per parent, with afterok on the parent's job.

    ``args`` are CellJob's arguments after the config (grid, workdir, results, data_root, device); the
    torch threads of a job are the profile's cpus_per_task. A dependent array is cancelled by SLURM when
    its parent fails (--kill-on-invalid-dep=yes), so nothing waits forever.
    """
    ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=profile["max_num_timeout"])
    base = cluster.executor_parameters(profile, job_name=f"proxbench-{grid.name}")
    device = "cuda" if profile.get("gpus_per_node") else "cpu"
    args = (*args[:-1], device)
    threads = profile["cpus_per_task"]
    submitted: dict[str, str] = {}

    def submit(cells: list[Cell], params: dict) -> str:
        ex.update_parameters(**params)
        try:
            with ex.batch():
                handles = [ex.submit(CellJob(), c.config, *args, threads, plugins=plugins) for c in cells]
        except Exception as exc:  # noqa: BLE001 - sbatch's refusal, as one line
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
            raise UserError(f"sbatch refused the job array of {len(cells)} cell(s): "
                            f"{_last_error_line(lines) if lines else type(exc).__name__}") from None
        for cell, job in zip(cells, handles):
            submitted[cell.run_id] = job.job_id
            _remember(jobs, cell, job.job_id, "slurm", folder)
        save()
        return handles[0].job_id.split("_")[0]

    stage0 = [c for c in todo if c.stage == 0]
    if stage0:
        array = submit(stage0, base)
        log(f"stage 0: {_what(array, len(stage0))}")
    children: dict[str, list[Cell]] = {}
    for cell in todo:
        if cell.stage > 0:
            children.setdefault(cell.parent, []).append(cell)
    finished = records.finished_ids(args[2], grid.name)
    for parent, cells in sorted(children.items()):
        params = dict(base)
        parent_job = submitted.get(parent) or (jobs.get(parent, {}).get("job_id") if parent not in finished else None)
        if parent_job:
            params["dependency"] = f"afterok:{parent_job}"
            params["additional_parameters"] = {**params.get("additional_parameters", {}), "kill_on_invalid_dep": "yes"}
        array = submit(cells, params)
        after = f" after {parent_job}" if parent_job else ""
        log(f"stage 1: {_what(array, len(cells), 'fine-tune ')}{after}")
    return submitted


def _what(job: str, n: int, kind: str = "") -> str:
    return f"job {job} (1 {kind}cell)" if n == 1 else f"job array {job} with {n} {kind}task(s)"


def grid_status(grid: Grid, workdir: str = "work", results: str = "results") -> list[dict]:
    """One row per cell: state (pending/queued/running/done/failed/diverged/timed-out/cancelled), job, epochs.

    A cell's record decides, unless it is a failed record older than the cell's latest submission (a
    resubmitted cell shows its new job's state). Without a record, the SLURM job's state decides; a failed
    or cancelled job shows why (its log's last error line, or the parent it waited for).
    """
    jobs = load_jobs(workdir, grid.name)
    slurm_ids = [j["job_id"] for j in jobs.values() if j.get("executor") == "slurm"]
    table = cluster.job_table(slurm_ids) if slurm_ids else {}
    rows = []
    for cell in grid.cells:
        path = records.record_path(results, grid.name, cell.run_id)
        record, _ = records.read_record(path)
        job = jobs.get(cell.run_id, {})
        if record is not None and record["status"] == "failed" and job.get("submitted_at", 0) > _mtime(path):
            record = None  # resubmitted since it failed
        progress = epochs_done(workdir, cell.run_id)
        row = {"run_id": cell.run_id, "cell": cell.label, "state": "pending", "job": job.get("job_id", ""),
               "epochs": f"{progress}/{cell.config['epochs']}", "acc": "", "error": ""}
        if record is not None:
            row["state"] = record["status"]
            row["acc"] = "" if record["final"].get("acc") is None else f"{record['final']['acc']:.2f}"
            row["error"] = record.get("error") or ""
        elif job.get("executor") == "slurm":
            state, reason = table.get(job["job_id"], ("", ""))
            # "submitted": sbatch accepted it but neither squeue nor sacct shows it yet
            row["state"] = SLURM_TO_CELL.get(state, "submitted")
            if row["state"] == "queued" and reason:
                row["error"] = f"waiting: {reason}"
            elif row["state"] == "failed":
                row["error"] = _job_error(job) or ("job ended without a record" if state == "COMPLETED" else state)
            elif row["state"] == "cancelled" and reason.startswith("Dependency") and cell.parent:
                row["error"] = f"fp parent {cell.parent} did not finish"
        rows.append(row)
    return rows


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0



def _job_error(job: dict) -> str:
    """Last error line of a failed job's stderr log (submitit's <folder>/<id>_0_log.err)."""
    for path in sorted(Path(job["folder"]).glob(f"{job['job_id']}_*_log.err")):
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
        if lines:
            return _last_error_line(lines)
    return ""


def cli_grid_run(args) -> int:
    """``grid run``: check the options, then the pre-flight (``preflight``; with ``--dry-run`` after the plan),
    then submit; local and debug cells are waited for (with ``GridProgress``), slurm ones with ``--wait``."""
    grid = load_grid(args.name)
    profile = None
    if args.executor == "slurm":
        if not args.cluster:
            raise UserError(f"--executor slurm needs --cluster PROFILE: one of {', '.join(cluster.shipped_profiles())} "
                            "(edit its placeholders first) or your own profile (fields in slurm/README.md)")
        profile = cluster.load_profile(args.cluster)
    elif args.cluster:
        raise UserError("--cluster is only used with --executor slurm")
    device, parallel, cells_per_gpu = args.device, args.parallel, args.cells_per_gpu
    check_run_options(args.executor, device, parallel, cells_per_gpu)
    if args.dry_run:
        _print_plan(grid, args, profile)
    problems = preflight(grid, pending_cells(grid, args.results), executor=args.executor, device=device,
                         profile=profile, data_root=args.data_root, parallel=parallel, cells_per_gpu=cells_per_gpu)
    raise_preflight(problems)
    if args.dry_run:
        return 0
    submit_grid(grid, args.executor, workdir=args.workdir, results=args.results, data_root=args.data_root,
                device=device or "cpu", profile=profile, parallel=parallel, cells_per_gpu=cells_per_gpu,
                plugins=plugin_specs(getattr(args, "plugin", ())))
    if args.executor == "slurm" and args.wait:
        return _wait_slurm(grid, args)
    if args.executor != "slurm":
        rows = grid_status(grid, args.workdir, args.results)
        _print_table(rows)
        return 0 if all(r["state"] in ("done", "diverged") for r in rows) else 1
    return 0


def _wait_slurm(grid: Grid, args) -> int:
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
    _print_table(rows)
    return 0 if all(r["state"] in ("done", "diverged") for r in rows) else 1


def _print_plan(grid: Grid, args, profile) -> None:
    done = records.finished_ids(args.results, grid.name)
    rows = [(c.run_id, c.stage, c.parent or "", "done" if c.run_id in done else "submit", c.label) for c in grid.cells]
    print(tabulate(rows, headers=["run id", "stage", "parent", "action", "cell"], tablefmt="github"))
    n = sum(1 for r in rows if r[3] == "submit")
    print(f"\n{len(rows)} cells, {n} to submit, {len(grid.stages())} stage(s); executor {args.executor}"
          + (f", profile {profile['path']}" if profile else "") + " (dry run: nothing submitted)")


def _print_table(rows: list[dict]) -> None:
    print(tabulate([[r[k] for k in ("run_id", "cell", "state", "job", "epochs", "acc", "error")] for r in rows],
                   headers=["run id", "cell", "state", "job", "epochs", "acc", "error"], tablefmt="github"))


def cli_grid_status(args) -> int:
    grid = load_grid(args.name)
    rows = grid_status(grid, args.workdir, args.results)
    _print_table(rows)
    print("\n" + _state_summary(rows))
    return 0


def _state_summary(rows: list[dict]) -> str:
    """'2 done, 1 running': how many cells are in each state."""
    return ", ".join(f"{n} {s}" for s, n in sorted(Counter(r["state"] for r in rows).items()))


def cli_grid_cancel(args) -> int:
    """scancel every queued or running job of the grid, then wait (up to 60 s) until SLURM shows them ended."""
    grid = load_grid(args.name)
    jobs = load_jobs(args.workdir, grid.name)
    done = records.finished_ids(args.results, grid.name)
    ids = [j["job_id"] for rid, j in jobs.items() if j.get("executor") == "slurm" and rid not in done]
    live: list[str] = []
    if ids:
        cluster.check_reachable()
        states = cluster.job_states(ids)
        recent = {j["job_id"] for j in jobs.values() if time.time() - j.get("submitted_at", 0) < 600}
        # cancel what is queued or running, or just submitted and not shown by SLURM yet
        live = [j for j in ids if states.get(j) in ACTIVE_STATES or (j not in states and j in recent)]
        if live:
            cluster.cancel(live)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                # over once SLURM's accounting shows each one ended (sacct lags squeue by a few seconds)
                states = cluster.job_states(live)
                left = [j for j in live if states.get(j, "PENDING") in ACTIVE_STATES]
                if not left:
                    break
                time.sleep(1)
            else:
                print(f"warning: still shown by SLURM after 60 s: {', '.join(left)}", file=sys.stderr)
    print(f"cancelled {len(live)} job(s) of grid {grid.name}", file=sys.stderr)
    return 0
