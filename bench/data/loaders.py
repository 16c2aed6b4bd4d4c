"""The loader registry: the ``Loader`` base class, ``@register_loader``, ``build_loader``.

Every loader yields ``(x float32 N×C×H×W normalised, y int64)`` on the device and follows one contract:
``len()`` batches, ``iter()`` an epoch, ``set_epoch(e)`` selects the epoch the next ``iter()`` yields (each
``iter()`` then advances the epoch by one, so forgetting ``set_epoch`` still gives a new order every epoch),
``num_samples``. ``train=True``: shuffled, augmented, last partial batch dropped; ``train=False``:
sequential, un-augmented, last partial batch kept.

Registered (``list_loaders()``, in this order): ``memory`` (``bench.data.memory``), ``torch``
(``bench.data.torch_loader``) and ``ffcv`` (``bench.data.ffcv_loader``). Epoch ``e`` of a loader built with
``seed`` is a pure function of ``(seed, e)``; without augmentation all three give the same samples,
labels and pixel values, bit for bit.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch

from bench.data.registry import Dataset, get_dataset
from bench.registry import Registry
from bench.errors import UserError

__all__ = ["Loader", "register_loader", "list_loaders", "get_loader_class", "build_loader"]


class Loader:
    """Common contract: ``len()`` batches, ``iter()`` -> (x, y) on the device, ``set_epoch``, ``num_samples``.

    A subclass is built as ``cls(dataset, split, batch_size=, train=, device=, seed=, data_root=, subset=,
    num_workers=, channels_last=, pad=, augment=)`` (see ``build_loader``) and calls ``super().__init__``
    with the number of samples it serves."""

    kind = "?"  # set by @register_loader
    compiles_first_epoch = False  # the first epoch includes compiling the pipeline (perf measures it apart)

    def __init__(self, dataset: Dataset, split: str, *, batch_size: int, train: bool, device, seed: int,
                 num_samples: int):
        self.dataset = dataset
        self.info = dataset.info
        self.split = split
        self.batch_size = int(batch_size)
        self.train = bool(train)
        self.device = torch.device(device)
        self.seed = int(seed)
        self.num_samples = int(num_samples)
        self.drop_last = self.train
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The next ``iter()`` yields epoch ``epoch`` (then each ``iter()`` advances by one)."""
        self.epoch = int(epoch)

    def next_epoch(self) -> int:
        """The epoch to yield now; advances the counter (for ``__iter__``)."""
        e = self.epoch
        self.epoch += 1
        return e

    @classmethod
    def check_available(cls) -> None:
        """Raise a ``UserError`` (with the install line) when a library this loader needs is missing."""

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.info.name}/{self.split}, {self.num_samples} samples, "
                f"batch {self.batch_size}, train={self.train}, device={self.device})")


LOADERS: Registry[type[Loader]] = Registry("loader", Loader, label="bench.data.Loader", attribute="kind")
# ``@register_loader(name)``, ``list_loaders(pattern)`` (registration order) and ``get_loader_class(name)``:
# the registry's own, with its rules (``bench.registry``)
register_loader, list_loaders, get_loader_class = LOADERS.register, LOADERS.names, LOADERS.get


def build_loader(name: str, split: str, *, loader: str = "memory", batch_size: int, train: bool,
                 device="cpu", seed: int = 0, data_root=None, subset: int | None = None, num_workers: int = 2,
                 options: dict | None = None, channels_last: bool = False, pad: int | None = None,
                 augment: bool = True) -> Loader:
    """A loader of kind ``loader`` over dataset ``name`` (with ``options``), split ``split``.

    ``train=True``: shuffled, augmented (random crop with ``pad`` px zero padding, default
    ``bench.data.plan.default_padding``, + horizontal flip; image-folder datasets: random resized crop +
    flip), last partial batch dropped; ``augment=False`` keeps the shuffle and drops the augmentation
    (image folders: the evaluation centre crop). ``train=False``: sequential, un-augmented, last partial
    batch kept. ``channels_last``: yield channels-last tensors (for CUDA + channels-last models)."""
    dataset = get_dataset(name, options)
    split = dataset.check_split(split)
    cls = get_loader_class(loader)
    if isinstance(batch_size, bool) or int(batch_size) <= 0:
        raise UserError(f"batch size must be a positive integer, got {batch_size}")
    if subset is not None and int(subset) <= 0:
        raise UserError(f"subset must be a positive number of samples, got {subset}")
    if int(num_workers) < 0:
        raise UserError(f"num_workers must be >= 0, got {num_workers}")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' requested but no CUDA device is available")
    return cls(dataset, split, batch_size=batch_size, train=train, device=device, seed=seed, data_root=data_root,
               subset=subset, num_workers=num_workers, channels_last=channels_last, pad=pad, augment=augment)

