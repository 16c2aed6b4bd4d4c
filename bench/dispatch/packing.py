"""Several cells in one SLURM job (``cells_per_gpu``): which cells share a job, and where each one trains.

A submission's cells go to SLURM as job arrays, one per stage: the stage-0 cells in one array, and the
fine-tune cells of each fp parent in an array of their own that waits for the parent's job (``stage_arrays``).
Within an array, ``pack`` cuts the cells into jobs of ``cells_per_job`` cells each, in grid order, so a job
only ever holds cells of one stage (and, for fine-tune cells, of one parent). With ``cells_per_gpu`` = K and
G = ``gpus_per_node`` GPUs per job, a job holds K x G cells (K on the CPU when G = 0); ``job_devices`` spreads
them over the job's GPUs, and ``job_threads`` shares its ``cpus_per_task`` cores among them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.dispatch.grid import Cell


def cells_per_job(cells_per_gpu: int, gpus_per_node: int) -> int:
    """Cells in one job: ``cells_per_gpu`` on each of the job's GPUs (on its CPUs when it has none)."""
    if cells_per_gpu < 1:
        raise ValueError(f"cells_per_gpu must be at least 1, got {cells_per_gpu}")
    return cells_per_gpu * max(1, gpus_per_node)


def stage_arrays(cells: list[Cell]) -> list[tuple[str | None, list[Cell]]]:
    """The job arrays of a submission, in submission order: ``(None, the stage-0 cells)`` (when there are any),
    then ``(parent run id, its fine-tune cells)`` per parent, sorted by parent."""
    arrays: list[tuple[str | None, list[Cell]]] = []
    stage0 = [c for c in cells if c.stage == 0]
    if stage0:
        arrays.append((None, stage0))
    children: dict[str, list[Cell]] = {}
    for cell in cells:
        if cell.stage > 0:
            children.setdefault(cell.parent, []).append(cell)
    arrays += sorted(children.items())
    return arrays


def pack(cells: list[Cell], per_job: int) -> list[list[Cell]]:
    """The cells of one array cut into jobs of ``per_job`` cells, in order (the last job may hold fewer)."""
    if per_job < 1:
        raise ValueError(f"per_job must be at least 1, got {per_job}")
    return [cells[i:i + per_job] for i in range(0, len(cells), per_job)]


def job_devices(n_cells: int, gpus_per_node: int) -> list[str]:
    """The device of each cell of a job: ``cuda`` with one GPU, ``cuda:i`` round robin over several, else
    ``cpu``."""
    if gpus_per_node <= 0:
        return ["cpu"] * n_cells
    if gpus_per_node == 1:
        return ["cuda"] * n_cells
    return [f"cuda:{i % gpus_per_node}" for i in range(n_cells)]


def job_threads(cpus_per_task: int, n_cells: int) -> int:
    """Torch threads of each cell of a job: its ``cpus_per_task`` cores shared (at least 1 each)."""
    return max(1, cpus_per_task // max(1, n_cells))
