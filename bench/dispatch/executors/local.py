"""The ``local`` executor: one subprocess per cell (submitit's LocalExecutor), stage by stage, in waves.

On the CPU (``--device cpu``, the default) a wave is ``--parallel`` cells, each with ``cores // cells in the
wave`` torch threads. With ``--device cuda`` a wave spreads its cells over every visible GPU,
``--cells-per-gpu`` per GPU (default 1), and each cell trains on its own ``cuda:i``; ``--device cuda:N`` puts
every cell on GPU N (the waves: ``bench.dispatch.placement``). The running jobs of a wave are polled together,
every ``POLL_SECONDS`` (``$PROXBENCH_POLL_S``, default 2); each ending cell is logged as it ends, and the next
wave starts when the wave is over.

The cells live and die with this process (``bench.dispatch.lifeline``): each job's submitit controller and
cell are started with SIGINT ignored (a terminal's Ctrl-C reaches this process alone, no traceback from
submitit's controller), and each cell stops within a second when this process is gone, kill -9 included.
On Ctrl-C, SIGTERM or any exception the running cells are sent SIGTERM through their controllers and waited
for (``STOP_WAIT_S``, then SIGKILL); they record themselves ``interrupted`` and resume from their last epoch
checkpoint when the grid is run again. Ctrl-C and SIGTERM end ``grid run`` with one line
(``GridInterrupted``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import replace

from bench.errors import UserError
from bench.dispatch.executors.base import Batch, Executor, register_executor
from bench.dispatch.executors.outcome import finish, initial_states
from bench.dispatch.lifeline import live_cells, me, stop_cells
from bench.dispatch.placement import Placement, local_placement

POLL_SECONDS = float(os.environ.get("PROXBENCH_POLL_S", "2"))
STOP_WAIT_S = 30.0


class GridInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM while a local grid runs; its message says what became of the running cells."""


def _on_sigterm(signum, frame) -> None:
    raise GridInterrupted()


@register_executor("local")
class LocalExecutor(Executor):
    """One subprocess per cell on this machine, in waves over the CPU or the GPUs."""

    gpu_placement = True
    plan: Placement | None = None  # set by prepare

    def placement(self) -> Placement:
        """The waves of this machine for ``--device`` (a UserError when the device is not here)."""
        return local_placement(self.device or "cpu", parallel=self.parallel, cells_per_gpu=self.cells_per_gpu,
                               n_gpus=self.n_gpus)

    def check_device(self) -> tuple[str | None, str]:
        try:
            return None, self.placement().describe()
        except UserError as exc:
            return str(exc), ""

    def prepare(self) -> None:
        self.plan = self.placement()

    def submit(self, batch: Batch) -> dict[str, str]:
        import submitit

        from bench.dispatch.cell_job import CellJob

        ex = submitit.LocalExecutor(folder=batch.folder)
        ex.update_parameters(timeout_min=24 * 60)
        progress, todo = batch.progress, batch.todo
        plan = self.plan or self.placement()
        args = replace(batch.args, guardian=me())
        submitted: dict[str, str] = {}
        states = initial_states(batch.grid, todo)
        running: dict[str, tuple] = {}
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
        try:
            for stage in sorted({c.stage for c in todo}):
                cells = [c for c in todo if c.stage == stage]
                start = 0
                for devices in plan.waves(len(cells)):
                    wave = cells[start:start + len(devices)]
                    start += len(devices)
                    # on the CPU every cell gets the same share of the cores, a last lone one too: torch's CPU
                    # sums depend on the thread count, so a cell's numbers must not depend on its wave
                    sharing = len(wave) if plan.gpus else plan.parallel
                    threads = max(1, (os.cpu_count() or 1) // sharing)
                    for cell, device in zip(wave, devices):
                        with _sigint_ignored():  # inherited by the controller and the cell: Ctrl-C is ours
                            job = ex.submit(CellJob(), cell.config, replace(args, device=device, threads=threads))
                        submitted[cell.run_id] = job.job_id
                        batch.book.remember(cell, job.job_id, self.name, batch.folder)
                        running[cell.run_id] = (cell, job)
                        states[cell.run_id] = "running"
                    batch.book.save()
                    while running:
                        if progress:
                            progress.update(states)
                        time.sleep(POLL_SECONDS)
                        for rid, (cell, job) in list(running.items()):
                            if job.done():
                                del running[rid]
                                states[rid] = finish(job, cell, batch.log, progress)
                    if progress:
                        progress.update(states)
        except BaseException as exc:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            with _sigint_ignored():
                n = _stop(running, batch)
            if isinstance(exc, KeyboardInterrupt):
                raise GridInterrupted(f"grid {batch.grid.name}: {n} running cell(s) stopped and recorded as "
                                      "interrupted; run the grid again to resume them from their last epoch "
                                      "checkpoint") from None
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            if progress:
                progress.close()
        batch.book.save()
        return submitted


@contextlib.contextmanager
def _sigint_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop(running: dict, batch: Batch) -> int:
    """SIGTERM the running jobs' controllers (submitit forwards it to the cells), wait for them, SIGKILL what
    is left of the grid's cells after ``STOP_WAIT_S``; returns how many cells were running."""
    jobs = [job for _, job in running.values()]
    for job in jobs:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(job.job_id), signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_S
    while any(not job.done() for job in jobs) and time.monotonic() < deadline:
        time.sleep(0.1)
    stop_cells(live_cells(batch.args.workdir, batch.grid.name).values(), wait_s=5.0)
    for job in jobs:
        if not job.done():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(job.job_id), signal.SIGKILL)
    return len(jobs)
