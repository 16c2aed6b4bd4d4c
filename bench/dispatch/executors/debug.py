"""The ``debug`` executor: every cell in this process, one after the other (submitit's DebugExecutor), fp
parents first, on ``--device`` (cpu, cuda or cuda:N). A failing cell's traceback is at hand for a debugger."""

from __future__ import annotations

from dataclasses import replace

from bench.errors import UserError
from bench.dispatch.executors.base import Batch, Executor, register_executor
from bench.dispatch.executors.outcome import finish, initial_states
from bench.dispatch.placement import cuda_devices, device_problem, parse_device


@register_executor("debug")
class DebugExecutor(Executor):
    """Every cell in this process, one at a time."""

    def check_device(self) -> tuple[str | None, str]:
        device, n_gpus, why = self.device or "cpu", self.n_gpus, ""
        if parse_device(device)[0] == "cuda" and n_gpus is None:
            n_gpus, why = cuda_devices()
        return device_problem(device, n_gpus or 0, why), f"{device} (one cell at a time, in this process)"

    def prepare(self) -> None:
        device = self.device or "cpu"
        if parse_device(device)[0] == "cuda":
            problem = device_problem(device, *cuda_devices())
            if problem:
                raise UserError(problem)

    def submit(self, batch: Batch) -> dict[str, str]:
        import submitit

        from bench.dispatch.cell_job import CellJob

        ex = submitit.DebugExecutor(folder=batch.folder)
        args = replace(batch.args, device=self.device or "cpu")
        progress = batch.progress
        submitted: dict[str, str] = {}
        states = initial_states(batch.grid, batch.todo)
        try:
            for cell in sorted(batch.todo, key=lambda c: c.stage):
                job = ex.submit(CellJob(), cell.config, args)
                submitted[cell.run_id] = job.job_id
                batch.book.remember(cell, job.job_id, self.name, batch.folder)
                batch.book.save()
                states[cell.run_id] = "running"
                if progress:
                    progress.update(states)
                states[cell.run_id] = finish(job, cell, batch.log, progress)  # trains here
                if progress:
                    progress.update(states)
        finally:
            if progress:
                progress.close()
        batch.book.save()
        return submitted
