"""Where cells train: the ``--device`` option and the GPU placement of the local executor's cells.

``parse_device`` reads ``cpu``, ``cuda`` (every visible GPU) or ``cuda:N``; ``cuda_devices`` counts the CUDA
devices here and ``device_problem`` says why a device cannot be used. The local executor runs its cells in
waves (``Placement``, from ``local_placement``): on the CPU ``--parallel`` cells at a time; on GPUs each wave
spreads its cells over every GPU, ``--cells-per-gpu`` per GPU (``gpu_waves``). ``use_gpu`` makes a job's
``cuda:i`` its process's current CUDA device.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from bench.errors import UserError

_DEVICE = re.compile(r"(cpu|cuda)(?::(\d+))?")


def parse_device(device: str) -> tuple[str, int | None]:
    """``'cpu'`` -> ('cpu', None), ``'cuda'`` -> ('cuda', None), ``'cuda:N'`` -> ('cuda', N); else a UserError."""
    found = _DEVICE.fullmatch(str(device))
    if not found or (found.group(1) == "cpu" and found.group(2) is not None):
        raise UserError(f"--device {device!r}: expected cpu, cuda (every visible GPU) or cuda:N (GPU N)")
    return found.group(1), None if found.group(2) is None else int(found.group(2))


def gpu_waves(n_cells: int, n_gpus: int, cells_per_gpu: int = 1, gpu_ids=None) -> list[list[str]]:
    """The device of each of ``n_cells`` cells, grouped in waves that run one after the other.

    A wave holds at most ``n_gpus * cells_per_gpu`` cells, and its i-th cell trains on GPU ``i mod n_gpus``: the
    cells of a wave spread over every GPU before a second one shares a GPU, and a short last wave uses as
    many GPUs as it has cells. ``gpu_ids`` names the GPUs (default ``0 .. n_gpus-1``; ``--device cuda:3`` is
    ``n_gpus=1, gpu_ids=[3]``). The waves, flattened, give the device of every cell in order.
    """
    ids = list(range(n_gpus)) if gpu_ids is None else [int(i) for i in gpu_ids]
    if n_gpus < 1 or cells_per_gpu < 1 or len(ids) != n_gpus or n_cells < 0:
        raise ValueError(f"gpu_waves: need n_gpus >= 1 ids ({ids}), cells_per_gpu >= 1, n_cells >= 0; "
                         f"got {n_cells}, {n_gpus}, {cells_per_gpu}")
    size = n_gpus * cells_per_gpu
    return [[f"cuda:{ids[i % n_gpus]}" for i in range(min(size, n_cells - start))]
            for start in range(0, n_cells, size)]


def cuda_devices() -> tuple[int, str]:
    """(CUDA devices torch sees here, why there are none: '' when there are some). ``CUDA_VISIBLE_DEVICES``
    applies: ``cuda:i`` is the i-th visible GPU, here and in every local job (they inherit the environment)."""
    import torch

    if torch.version.cuda is None:
        return 0, f"this PyTorch ({torch.__version__}) is built without CUDA"
    count = torch.cuda.device_count()
    if count:
        return count, ""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    return 0, ("torch.cuda.is_available() is False: no GPU or no working driver"
               + (f"; CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""))


def device_problem(device: str, n_gpus: int, why: str = "") -> str | None:
    """Why ``device`` cannot be used on a machine with ``n_gpus`` CUDA devices (None: it can)."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return None
    if n_gpus < 1:
        return f"--device {device}: no CUDA device is available here" + (f" ({why})" if why else "")
    if index is not None and index >= n_gpus:
        return f"--device {device}: this machine has {n_gpus} CUDA device(s) (cuda:0 to cuda:{n_gpus - 1})"
    return None


@dataclass(frozen=True)
class Placement:
    """Where the local executor trains its cells: on ``gpus`` (indices of visible GPUs), ``per_gpu`` cells at
    a time on each; without GPUs on the CPU, ``parallel`` cells at a time."""

    gpus: tuple[int, ...] = ()
    per_gpu: int = 1
    parallel: int = 1

    def waves(self, n_cells: int) -> list[list[str]]:
        """The device of each of ``n_cells`` cells, grouped in waves (``gpu_waves`` on GPUs)."""
        if self.gpus:
            return gpu_waves(n_cells, len(self.gpus), self.per_gpu, self.gpus)
        return [["cpu"] * min(self.parallel, n_cells - start) for start in range(0, n_cells, self.parallel)]

    def describe(self) -> str:
        if not self.gpus:
            return f"cpu, {self.parallel} cell(s) at a time"
        names = ", ".join(f"cuda:{i}" for i in self.gpus)
        return (f"{names} ({len(self.gpus)} GPU(s) x {self.per_gpu} cell(s) per GPU: "
                f"{len(self.gpus) * self.per_gpu} cell(s) at a time)")


def local_placement(device: str = "cpu", *, parallel: int | None = None, cells_per_gpu: int | None = None,
                    n_gpus: int | None = None) -> Placement:
    """The local executor's ``Placement`` for ``--device``; ``n_gpus``: the CUDA devices to assume (None:
    count them, ``cuda_devices``). A device that is not there is a UserError (``device_problem``)."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return Placement(parallel=max(1, parallel or 1))
    why = ""
    if n_gpus is None:
        n_gpus, why = cuda_devices()
    problem = device_problem(device, n_gpus, why)
    if problem:
        raise UserError(problem)
    gpus = tuple(range(n_gpus)) if index is None else (index,)
    return Placement(gpus=gpus, per_gpu=max(1, cells_per_gpu or 1))


def use_gpu(device: str, torch) -> None:
    """Make GPU i the current CUDA device for ``device = 'cuda:i'`` when it exists (else train.execute says
    why it cannot be used)."""
    try:
        kind, index = parse_device(device)
    except UserError:
        return  # train.execute reports a malformed device
    if kind == "cuda" and index is not None and torch.cuda.is_available() and index < torch.cuda.device_count():
        torch.cuda.set_device(index)
