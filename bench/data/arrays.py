"""Array datasets: whole splits decoded into uint8 tensors, cached in the process.

``ArrayDataset`` is the base of the datasets small enough to hold in memory (Fashion-MNIST, CIFAR,
synthetic): a subclass decodes a split into ``(uint8 N×C×H×W, int64 N)`` numpy arrays (``decode``).
``load_split`` returns them as tensors, decoded once per process: the cache is keyed by the source files'
size and mtime (``cache_key``), so a changed file is decoded again. For FFCV, an array split is stored
from an ``ArraySource`` (HWC RGB samples; a gray channel is replicated 3 times).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from bench.data.registry import Dataset, get_dataset
from bench.data.sources import file_key, files_fingerprint
from bench.errors import UserError


class ArraySource:
    """Indexable (HWC uint8 RGB image, label) samples from a uint8 N×C×H×W array (C = 1 or 3)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images = images
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        a = self.images[i]
        if a.shape[0] == 1:
            a = np.repeat(a, 3, axis=0)
        return np.ascontiguousarray(a.transpose(1, 2, 0)), int(self.labels[i])


class ArrayDataset(Dataset):
    """A dataset decoded whole into arrays (the ``memory`` loader holds it on the device)."""

    in_memory = True

    def decode(self, split: str, data_root=None) -> tuple[np.ndarray, np.ndarray]:
        """The split as (uint8 N×C×H×W, int64 N) arrays."""
        raise NotImplementedError

    def cache_key(self, split: str, data_root=None) -> tuple:
        """Changes when the decoded arrays would (default: the source files' paths, sizes, mtimes)."""
        return (self.name, split, file_key(self.source_files(split, data_root)))

    def arrays(self, split: str, data_root=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The whole split as tensors, from the process cache (treat them as read-only)."""
        import torch  # here, not at the top: listing the datasets needs no torch

        key = self.cache_key(split, data_root)
        with _ARRAY_LOCK:
            cached = _ARRAY_CACHE.get(key)
        if cached is None:
            x, y = self.decode(split, data_root)
            cached = (torch.from_numpy(np.array(x, copy=True, order="C")),
                      torch.from_numpy(np.array(y, copy=True, order="C")))
            with _ARRAY_LOCK:
                for k in [k for k in _ARRAY_CACHE if k[:2] == key[:2]]:
                    del _ARRAY_CACHE[k]  # an older version of the same split
                _ARRAY_CACHE[key] = cached
        return cached

    def beton_fingerprint(self, split: str, data_root, old: dict | None) -> dict:
        return files_fingerprint(self.source_files(split, data_root), old)

    def beton_samples(self, split: str, data_root, errors_path: str):
        xt, yt = self.arrays(split, data_root)
        x, y = xt.numpy(), yt.numpy()
        return ArraySource(x, y), y, [int(x.shape[2]), int(x.shape[3]), 3]


_ARRAY_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
_ARRAY_LOCK = threading.Lock()


def load_split(name: str, split: str, data_root: str | Path | None = None, options: dict | None = None,
               subset: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole split of an array dataset: (uint8 N×C×H×W, int64 N), the first ``subset`` samples if given.

    Decoded splits are cached in the process (keyed by the files' size and mtime); the returned tensors
    share that cache, so treat them as read-only."""
    ds = get_dataset(name, options)
    split = ds.check_split(split)
    if not ds.in_memory:
        raise UserError(f"dataset '{name}' is too large to hold in memory: use loader 'torch' or 'ffcv'")
    if subset is not None and int(subset) <= 0:
        raise UserError(f"subset must be a positive number of samples, got {subset}")
    x, y = ds.arrays(split, data_root)
    if subset is not None:
        x, y = x[: int(subset)], y[: int(subset)]
    return x, y
