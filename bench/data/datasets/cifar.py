"""CIFAR-10 and CIFAR-100 (Krizhevsky): 32×32 RGB, 50000 + 10000 images, in torchvision's layout
(``<root>/cifar-10-batches-py``, ``<root>/cifar-100-python``: pickled batches), downloaded by torchvision
when missing and allowed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.data.arrays import ArrayDataset
from bench.data.registry import register_dataset
from bench.data.sources import download_allowed, resolve_data_root, socket_timeout
from bench.errors import UserError


class CifarDataset(ArrayDataset):
    """A CIFAR dataset read through its torchvision class (``torchvision_name``)."""

    in_chans, img_size, train_size, test_size = 3, 32, 50000, 10000
    downloadable = True
    torchvision_name = "CIFAR10"
    folder, train_files, test_files = "", (), ()  # set per dataset by _cifar

    def torchvision_class(self):
        import torchvision

        return getattr(torchvision.datasets, self.torchvision_name)

    def torchvision_dataset(self, split: str, data_root=None):
        """torchvision's dataset of the split (md5-checked and unpickled), downloaded if missing and allowed."""
        cls, root = self.torchvision_class(), resolve_data_root(data_root)
        train = split == "train"
        try:
            return cls(str(root), train=train, download=False)
        except RuntimeError:
            pass
        how = self._not_found(root)
        if not download_allowed():
            raise UserError(how + " (downloads disabled by PROXBENCH_NO_DOWNLOAD)")
        try:
            with socket_timeout(20):
                return cls(str(root), train=train, download=True)
        except Exception as exc:
            raise UserError(how + f"; the download failed ({type(exc).__name__}: {exc})") from None

    def _not_found(self, root: Path) -> str:
        return (f"dataset '{self.name}' not found under {root / self.folder} (torchvision layout); put the "
                f"extracted archive from https://www.cs.toronto.edu/~kriz/ there or point --data-root / "
                "PROXBENCH_DATA at its parent")

    def source_files(self, split: str, data_root=None) -> list[Path]:
        # torchvision's layout (its class's base_folder, train_list and test_list; a test checks they agree),
        # written here so that listing the datasets imports no torchvision; constructing the dataset would
        # md5-check and unpickle the split
        split = self.check_split(split)
        root = resolve_data_root(data_root)
        files = [root / self.folder / f for f in (self.train_files if split == "train" else self.test_files)]
        if not all(p.is_file() for p in files):
            if not download_allowed():  # said without importing torchvision
                raise UserError(self._not_found(root) + " (downloads disabled by PROXBENCH_NO_DOWNLOAD)")
            self.torchvision_dataset(split, data_root)  # downloads them, or raises the error saying where
        return files

    def decode(self, split: str, data_root=None) -> tuple[np.ndarray, np.ndarray]:
        ds = self.torchvision_dataset(split, data_root)
        return np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2)), np.asarray(ds.targets, dtype=np.int64)


def _cifar(classes: int, mean: tuple[float, ...], std: tuple[float, ...], folder: str,
           train_files: tuple[str, ...], test_files: tuple[str, ...]) -> type[CifarDataset]:
    """The dataset class of CIFAR-``classes`` (torchvision's ``CIFAR<classes>``: the split files under
    ``folder``), registered as ``cifar<classes>``."""
    attributes = {"num_classes": classes, "mean": mean, "std": std, "torchvision_name": f"CIFAR{classes}",
                  "folder": folder, "train_files": train_files, "test_files": test_files,
                  "description": f"CIFAR-{classes}, 32x32 RGB, {classes} classes (torchvision layout {folder})"}
    return register_dataset(f"cifar{classes}")(type(f"Cifar{classes}", (CifarDataset,), attributes))


Cifar10 = _cifar(10, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "cifar-10-batches-py",
                 tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",))
Cifar100 = _cifar(100, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "cifar-100-python", ("train",), ("test",))
