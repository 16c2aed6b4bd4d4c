"""The executor interface and its registry: where and how ``grid run`` runs a grid's cells.

An executor is a subclass of ``Executor`` registered under a name with ``@register_executor("name")``;
``list_executors()`` names them (in registration order: the built-in ``local``, ``debug``, ``slurm``),
``get_executor(name)`` returns the class and ``create_executor(name, **options)`` an instance. An unknown name
is a one-line UserError naming the valid ones, with a "did you mean" hint.

What ``grid run``, ``grid status`` and ``grid cancel`` need to know of an executor is on its class:

* ``remote``: its jobs run on a cluster and outlive ``grid run``, which returns once they are queued (or,
  with ``--wait``, polls the cluster). Cells whose job is still queued or running are not resubmitted;
  ``grid status`` asks the cluster for the state of a cell without a record (``job_table``, ``cell_state``);
  ``grid cancel`` cancels them (``check_reachable``, ``is_active``, ``cancel``). Otherwise ``grid run`` runs
  the cells itself, shows their progress and ends when they have.
* ``needs_profile``: ``--cluster PROFILE`` is required (``read_profile``), and refused by the others.
* ``gpu_placement``: it spreads cells over the local GPUs (``--cells-per-gpu``; ``--parallel`` only on the
  CPU).
* ``packs_cells``: it puts ``--cells-per-gpu`` cells in one job on any device (slurm: overrides the profile's
  ``cells_per_gpu``).

An instance holds the ``grid run`` options (``device``, ``profile``, ``parallel``, ``cells_per_gpu``,
``n_gpus``); ``check_options`` refuses options that do not fit, ``check_device`` is the pre-flight's device
check, ``prepare`` runs before the grid's lock is taken, and ``submit(batch)`` submits (or runs) a ``Batch``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar

from bench.errors import UserError
from bench.registry import Registry
from bench.dispatch.placement import parse_device

if TYPE_CHECKING:
    from bench.dispatch.cell_job import CellArgs
    from bench.dispatch.grid import Cell, Grid
    from bench.dispatch.jobs import JobBook
    from bench.dispatch.progress import GridProgress



@dataclass
class Batch:
    """The cells one ``grid run`` submits: ``todo`` (the grid's ``Cell``s to run), ``book`` (the grid's
    ``bench.dispatch.jobs.JobBook``: each job is remembered there and saved), ``folder`` (the submitit folder
    of this submission), ``args`` (the ``CellArgs`` every job starts from), ``progress`` (a ``GridProgress`` or
    None) and ``log`` (one line at a time)."""

    grid: Grid
    todo: list[Cell]
    book: JobBook
    folder: Path
    args: CellArgs
    progress: GridProgress | None = None
    log: Callable[[str], None] = print


class Executor:
    """Base class of every executor (register subclasses with ``@register_executor``)."""

    name: ClassVar[str] = ""
    remote: ClassVar[bool] = False
    needs_profile: ClassVar[bool] = False
    gpu_placement: ClassVar[bool] = False
    packs_cells: ClassVar[bool] = False

    def __init__(self, *, device: str | None = None, profile: dict | None = None, parallel: int | None = None,
                 cells_per_gpu: int | None = None, n_gpus: int | None = None):
        self.device = device  # None: not given (cpu for the local executors, the profile's for a cluster)
        self.profile = profile
        self.parallel = parallel
        self.cells_per_gpu = cells_per_gpu
        self.n_gpus = n_gpus  # GPUs to assume here (None: count them)

    @classmethod
    def read_profile(cls, cluster: str | None) -> dict | None:
        """The cluster profile of ``--cluster``: refused unless the executor needs one."""
        if cluster:
            needing = [n for n in list_executors() if get_executor(n).needs_profile]
            raise UserError(f"--cluster is only used with --executor {' or '.join(needing)}")
        return None

    def check_options(self) -> None:
        """One-line UserErrors for ``grid run`` options that do not fit together (before anything is checked or
        submitted): a malformed ``--device``; ``--cells-per-gpu`` without GPU placement on CUDA (unless the
        executor ``packs_cells``); ``--parallel``
        on GPUs (there the cells at a time are the GPUs times ``--cells-per-gpu``); counts below 1."""
        kind = parse_device(self.device)[0] if self.device is not None else "cpu"
        if self.cells_per_gpu is not None:
            if self.cells_per_gpu < 1:
                raise UserError(f"--cells-per-gpu must be at least 1, got {self.cells_per_gpu}")
            if not self.packs_cells and (not self.gpu_placement or kind != "cuda"):
                packing = [n for n in list_executors() if get_executor(n).packs_cells]
                raise UserError("--cells-per-gpu is for --executor local with --device cuda or cuda:N"
                                + "".join(f", or --executor {n}" for n in packing))
        if self.parallel is not None:
            if self.parallel < 1:
                raise UserError(f"--parallel must be at least 1, got {self.parallel}")
            if self.gpu_placement and kind == "cuda":
                raise UserError("--parallel is for the CPU: with --device cuda the cells at a time are the GPUs "
                                "times --cells-per-gpu")

    def check_device(self) -> tuple[str | None, str]:
        """The pre-flight's device check: (problem or None, the device(s) the cells will train on)."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Checks before the grid's lock is taken (a UserError leaves nothing behind)."""

    def submit(self, batch: Batch) -> dict[str, str]:
        """Submit (or run) the cells of ``batch``; returns {run id: job id}."""
        raise NotImplementedError

    # -- remote executors: the cluster's view of their jobs ----------------------------------------------------
    def check_reachable(self) -> None:
        """Raise a UserError when the cluster cannot be reached."""

    def job_table(self, job_ids: list[str]) -> dict[str, tuple[str, str]]:
        """{job id: (the cluster's state, reason)} of the jobs it knows."""
        return {}

    def is_active(self, state: str) -> bool:
        """Is a job in the cluster's ``state`` queued or running (not over)?"""
        return False

    def cell_state(self, job: dict, entry: tuple[str, str] | None, parent: str | None) -> tuple[str, str]:
        """(the cell's state for ``grid status``, its error column) of a cell without a record, from its jobs.json
        entry ``job`` and the ``job_table`` entry of that job (None: not shown); ``parent``: its fp parent."""
        return "pending", ""

    def cancel(self, job_ids: list[str]) -> None:
        """Cancel the jobs."""


# read while the CLI's parser is built (``--executor``'s choices), before any plugin may load: no autoload
EXECUTORS: Registry[type[Executor]] = Registry("executor", Executor, autoload=False)
# ``@register_executor(name)``, ``list_executors(pattern)`` (registration order) and ``get_executor(name)``
# (the class): the registry's own, with its rules (``bench.registry``)
register_executor, list_executors, get_executor = EXECUTORS.register, EXECUTORS.names, EXECUTORS.get


def create_executor(name: str, **options) -> Executor:
    """An instance of the executor ``name`` with the ``grid run`` options (see ``Executor``)."""
    return get_executor(name)(**options)
