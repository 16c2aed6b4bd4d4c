"""The ``slurm`` executor: one job array per stage on a SLURM cluster, through submitit's SlurmExecutor.

The cluster profile (``--cluster``, required: ``bench.dispatch.slurm.profile``) sets the resources of every
job and decides the device: cuda when it asks for GPUs, else the CPU with ``cpus_per_task`` torch threads.
Fine-tune cells are one array per fp parent, depending (``afterok``) on the parent's job; SLURM cancels a
dependent array when its parent fails (``--kill-on-invalid-dep=yes``), so nothing waits forever. Jobs are
checkpointable: on timeout or preemption submitit requeues them, and a requeued job resumes from its last
epoch checkpoint in the work directory.

With ``cells_per_gpu`` = K > 1 (the profile's key, or ``--cells-per-gpu``, which overrides it) each array task
holds K cells on each of the job's GPUs (K on its CPUs without GPUs), cut from one stage's array in grid order
(``bench.dispatch.packing``), and runs them at once, each in its own process (``cell_job.PackJob``); each cell
keeps its own record and checkpoint, and jobs.json gives each cell its task's id. The task fails when one of
its cells failed; a fine-tune array waits (afterok) for its parent's task, so when a parent shares its task
with a cell that fails, its fine-tune cells are cancelled too (the next ``grid run`` submits them again).

``SLURM_TO_CELL`` maps a job's SLURM state to the state ``grid status`` shows for a cell without a record;
``ACTIVE_STATES`` are the states of a job that is not over (queued or running: not resubmitted, cancellable).
"""

from __future__ import annotations

from dataclasses import replace

from bench.errors import UserError
from bench.dispatch.executors.base import Batch, Executor, register_executor
from bench.dispatch.jobs import job_error
from bench.dispatch.packing import cells_per_job, job_devices, job_threads, pack, stage_arrays
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
    packs_cells = True

    @classmethod
    def read_profile(cls, cluster: str | None) -> dict | None:
        if not cluster:
            raise UserError(f"--executor slurm needs --cluster PROFILE: one of {', '.join(shipped_profiles())} "
                            "(edit its placeholders first) or your own profile (fields in slurm/README.md)")
        return load_profile(cluster)

    def packing(self) -> int:
        """Cells per GPU (on the CPU: per job): ``--cells-per-gpu``, else the profile's ``cells_per_gpu``."""
        return self.cells_per_gpu or (self.profile or {}).get("cells_per_gpu", 1)

    def check_device(self) -> tuple[str | None, str]:
        """``--device``, if given, agrees with the profile's ``gpus_per_node``."""
        path, gpus = self.profile["path"], self.profile["gpus_per_node"]
        k = self.packing()
        where = f"cuda, {gpus} GPU(s) per job" if gpus else "cpu"
        if k > 1:
            where += f", {cells_per_job(k, gpus)} cells per job" + (f" ({k} per GPU)" if gpus else "")
        where += f" (profile {path})" if gpus else f" (profile {path} asks for no GPU)"
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
        """One job array per stage; a fine-tune array per parent, with afterok on the parent's job. Each task
        runs one cell (``CellJob``) or, packed, several (``PackJob``: ``bench.dispatch.packing``)."""
        import submitit

        from bench.dispatch.cell_job import CellJob, PackJob
        from bench.run import records

        profile, book, log = self.profile, batch.book, batch.log
        ex = submitit.SlurmExecutor(folder=batch.folder, max_num_timeout=profile["max_num_timeout"])
        base = executor_parameters(profile, job_name=f"proxbench-{batch.grid.name}")
        gpus, cpus = profile.get("gpus_per_node", 0), profile["cpus_per_task"]
        per_job = cells_per_job(self.packing(), gpus)
        # each cell gets its share of a full job's cores, in a job with fewer cells too (a grid's last one):
        # torch's CPU sums depend on the thread count, so a cell's numbers must not depend on its packing
        args = replace(batch.args, device="cuda" if gpus else "cpu", threads=job_threads(cpus, per_job))
        submitted: dict[str, str] = {}

        def job(cells: list) -> tuple:
            if len(cells) == 1:
                return CellJob(), cells[0].config, args
            return PackJob(), [c.config for c in cells], job_devices(len(cells), gpus), args

        def submit(cells: list, params: dict) -> str:
            ex.update_parameters(**params)
            groups = pack(cells, per_job)
            try:
                with ex.batch():
                    handles = [ex.submit(*job(group)) for group in groups]
            except Exception as exc:  # noqa: BLE001 - sbatch's refusal, as one line
                raise UserError(f"sbatch refused the job array of {len(cells)} cell(s): "
                                f"{sbatch_refusal(str(exc)) or type(exc).__name__}") from None
            for group, handle in zip(groups, handles):
                for cell in group:
                    submitted[cell.run_id] = handle.job_id
                    book.remember(cell, handle.job_id, self.name, batch.folder)
            book.save()
            return array_base(handles[0].job_id)

        finished = records.finished_ids(args.results, batch.grid.name)
        for parent, cells in stage_arrays(batch.todo):
            params = dict(base)
            parent_job = None
            if parent is not None:
                parent_job = submitted.get(parent) or (book.get(parent).get("job_id") if parent not in finished else None)
            if parent_job:
                params["dependency"] = f"afterok:{parent_job}"
                params["additional_parameters"] = {**params.get("additional_parameters", {}),
                                                   "kill_on_invalid_dep": "yes"}
            array = submit(cells, params)
            kind = "" if parent is None else "fine-tune "
            after = f" after {parent_job}" if parent_job else ""
            log(f"stage {0 if parent is None else 1}: {_what(array, len(cells), per_job, kind)}{after}")
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


def _what(job: str, n: int, per_job: int = 1, kind: str = "") -> str:
    if per_job == 1 or n == 1:
        return f"job {job} (1 {kind}cell)" if n == 1 else f"job array {job} with {n} {kind}task(s)"
    tasks = -(-n // per_job)
    if tasks == 1:
        return f"job {job} ({n} {kind}cells packed)"
    return f"job array {job} with {tasks} task(s) of up to {per_job} packed {kind}cells ({n} cells)"
