"""The ``slurm`` executor: one job array per stage on a SLURM cluster, through submitit's SlurmExecutor.

The cluster profile (``--cluster``, required: ``bench.dispatch.slurm.profile``) sets the resources of every
job and decides the device: cuda when it asks for GPUs, else the CPU with ``cpus_per_task`` torch threads.
Fine-tune cells are one array per fp parent, depending (``afterok``) on the parent's job; SLURM cancels a
dependent array when its parent fails (``--kill-on-invalid-dep=yes``), so nothing waits forever. Jobs are
checkpointable: on timeout or preemption submitit requeues them, and a requeued job resumes from its last
epoch checkpoint in the work directory.

``SLURM_TO_CELL`` maps a job's SLURM state to the state ``grid status`` shows for a cell without a record;
``ACTIVE_STATES`` are the states of a job that is not over (queued or running: not resubmitted, cancellable).
"""

from __future__ import annotations

from dataclasses import replace

from bench.errors import UserError
from bench.dispatch.executors.base import Batch, Executor, register_executor
from bench.dispatch.jobs import job_error
from bench.dispatch.placement import parse_device
from bench.dispatch.slurm import client
from bench.dispatch.slurm.parsers import array_base, sbatch_refusal
from bench.dispatch.slurm.profile import executor_parameters, load_profile, shipped_profiles

# SLURM state of a cell's job (when it has no record) -> the state `grid status` shows
SLURM_TO_CELL = {"PENDING": "queued", "REQUEUED": "queued", "REQUEUE_HOLD": "queued", "REQUEUE_FED": "queued",
                 "PREEMPTED": "queued", "SUSPENDED": "queued", "STOPPED": "queued", "CONFIGURING": "running",
                 "RUNNING": "running", "COMPLETING": "running", "SIGNALING": "running", "STAGE_OUT": "running",
                 "RESIZING": "running", "TIMEOUT": "timed-out", "CANCELLED": "cancelled", "FAILED": "failed",
                 "NODE_FAIL": "failed", "OUT_OF_MEMORY": "failed", "BOOT_FAIL": "failed", "DEADLINE": "failed",
                 "COMPLETED": "failed"}  # COMPLETED without a record: the job ended without writing one
# SLURM states of a job that is not over yet (squeue's and sacct's names)
ACTIVE_STATES = {state for state, cell in SLURM_TO_CELL.items() if cell in ("queued", "running")}


@register_executor("slurm")
class SlurmExecutor(Executor):
    """Job arrays on a SLURM cluster, as the cluster profile asks."""

    remote = True
    needs_profile = True

    @classmethod
    def read_profile(cls, cluster: str | None) -> dict | None:
        if not cluster:
            raise UserError(f"--executor slurm needs --cluster PROFILE: one of {', '.join(shipped_profiles())} "
                            "(edit its placeholders first) or your own profile (fields in slurm/README.md)")
        return load_profile(cluster)

    def check_device(self) -> tuple[str | None, str]:
        """``--device``, if given, agrees with the profile's ``gpus_per_node``."""
        path, gpus = self.profile["path"], self.profile["gpus_per_node"]
        where = f"cuda, {gpus} GPU(s) per job (profile {path})" if gpus else f"cpu (profile {path} asks for no GPU)"
        if self.device is None:
            return None, where
        kind, index = parse_device(self.device)
        if index is not None:
            return (f"--device {self.device}: a SLURM job sees only the GPU(s) it is given; use --device cuda or "
                    "leave --device out"), where
        if kind == "cuda" and not gpus:
            return f"--device {self.device}: cluster profile {path} asks for no GPU (gpus_per_node = 0)", where
        if kind == "cpu" and gpus:
            return (f"--device cpu: cluster profile {path} asks for {gpus} GPU(s) per job (gpus_per_node); leave "
                    "--device out to train on them, or use a profile without GPUs"), where
        return None, where

    def prepare(self) -> None:
        if self.profile is None:
            raise UserError(f"executor 'slurm' needs a cluster profile (--cluster; shipped: "
                            f"{', '.join(shipped_profiles())})")
        client.check_reachable()  # before the lock: an unreachable SLURM leaves nothing behind

    def submit(self, batch: Batch) -> dict[str, str]:
        """One job array per stage; a fine-tune array per parent, with afterok on the parent's job."""
        import submitit

        from bench.dispatch.cell_job import CellJob
        from bench.run import records

        profile, book, log = self.profile, batch.book, batch.log
        ex = submitit.SlurmExecutor(folder=batch.folder, max_num_timeout=profile["max_num_timeout"])
        base = executor_parameters(profile, job_name=f"proxbench-{batch.grid.name}")
        args = replace(batch.args, device="cuda" if profile.get("gpus_per_node") else "cpu",
                       threads=profile["cpus_per_task"])
        submitted: dict[str, str] = {}

        def submit(cells: list, params: dict) -> str:
            ex.update_parameters(**params)
            try:
                with ex.batch():
                    handles = [ex.submit(CellJob(), c.config, args) for c in cells]
            except Exception as exc:  # noqa: BLE001 - sbatch's refusal, as one line
                raise UserError(f"sbatch refused the job array of {len(cells)} cell(s): "
                                f"{sbatch_refusal(str(exc)) or type(exc).__name__}") from None
            for cell, job in zip(cells, handles):
                submitted[cell.run_id] = job.job_id
                book.remember(cell, job.job_id, self.name, batch.folder)
            book.save()
            return array_base(handles[0].job_id)

        stage0 = [c for c in batch.todo if c.stage == 0]
        if stage0:
            log(f"stage 0: {_what(submit(stage0, base), len(stage0))}")
        children: dict[str, list] = {}
        for cell in batch.todo:
            if cell.stage > 0:
                children.setdefault(cell.parent, []).append(cell)
        finished = records.finished_ids(args.results, batch.grid.name)
        for parent, cells in sorted(children.items()):
            params = dict(base)
            parent_job = submitted.get(parent) or (book.get(parent).get("job_id") if parent not in finished else None)
            if parent_job:
                params["dependency"] = f"afterok:{parent_job}"
                params["additional_parameters"] = {**params.get("additional_parameters", {}),
                                                   "kill_on_invalid_dep": "yes"}
            array = submit(cells, params)
            after = f" after {parent_job}" if parent_job else ""
            log(f"stage 1: {_what(array, len(cells), 'fine-tune ')}{after}")
        return submitted

    def check_reachable(self) -> None:
        client.check_reachable()

    def job_table(self, job_ids: list[str]) -> dict[str, tuple[str, str]]:
        return client.job_table(job_ids)

    def is_active(self, state: str) -> bool:
        return state in ACTIVE_STATES

    def cell_state(self, job: dict, entry: tuple[str, str] | None, parent: str | None) -> tuple[str, str]:
        """The cell's state by ``SLURM_TO_CELL`` ("submitted": sbatch accepted the job but neither squeue nor
        sacct shows it yet); the error column says why a job waits, failed or was cancelled."""
        state, reason = entry or ("", "")
        shown = SLURM_TO_CELL.get(state, "submitted")
        if shown == "queued" and reason:
            return shown, f"waiting: {reason}"
        if shown == "failed":
            return shown, job_error(job) or ("job ended without a record" if state == "COMPLETED" else state)
        if shown == "cancelled" and reason.startswith("Dependency") and parent:
            return shown, f"fp parent {parent} did not finish"
        return shown, ""

    def cancel(self, job_ids: list[str]) -> None:
        client.cancel(job_ids)


def _what(job: str, n: int, kind: str = "") -> str:
    return f"job {job} (1 {kind}cell)" if n == 1 else f"job array {job} with {n} {kind}task(s)"
