"""The ``local`` executor: one subprocess per cell (submitit's LocalExecutor), stage by stage, in waves.

On the CPU (``--device cpu``, the default) a wave is ``--parallel`` cells, each with ``cores // cells in the
wave`` torch threads. With ``--device cuda`` a wave spreads its cells over every visible GPU,
``--cells-per-gpu`` per GPU (default 1), and each cell trains on its own ``cuda:i``; ``--device cuda:N`` puts
every cell on GPU N (the waves: ``bench.dispatch.placement``). The running jobs of a wave are polled together,
every ``POLL_SECONDS`` (``$PROXBENCH_POLL_S``, default 2); each ending cell is logged as it ends, and the next
wave starts when the wave is over. On an exception (Ctrl-C) the running jobs are cancelled (they resume from
their last checkpoint when the grid is run again).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace

from bench.errors import UserError
from bench.dispatch.executors.base import Batch, Executor, register_executor
from bench.dispatch.executors.outcome import finish, initial_states
from bench.dispatch.placement import Placement, local_placement

POLL_SECONDS = float(os.environ.get("PROXBENCH_POLL_S", "2"))


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
        submitted: dict[str, str] = {}
        states = initial_states(batch.grid, todo)
        running: dict[str, tuple] = {}
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
                        job = ex.submit(CellJob(), cell.config, replace(batch.args, device=device, threads=threads))
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
        except BaseException:
            for _, job in running.values():
                job.cancel()
            raise
        finally:
            if progress:
                progress.close()
        batch.book.save()
        return submitted
