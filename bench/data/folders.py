"""Image-folder datasets: one folder per split, one sub-folder per class (torchvision's ImageFolder).

``FolderDataset`` is the base of datasets too large to hold in memory (ImageNet): images of any size, read
by the ``torch`` loader through ``ImageFolder`` (random resized crop to ``img_size`` for training, resize +
centre crop for evaluation) or stored JPEG-compressed in a ``.beton`` (longest side ``beton_max_res``).
Its FFCV fingerprint hashes every file's relative path, label, size and mtime (not the bytes). An image
that fails to decode while a ``.beton`` is written is logged and replaced by a black one; the preparation
then refuses the file.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from bench.data.registry import Dataset
from bench.data.sources import resolve_data_root
from bench.errors import UserError


class FolderSource:
    """ImageFolder samples as (HWC uint8 RGB, label). A sample that fails to decode does not hang FFCV's
    writer (a dead worker makes it wait forever): the error is logged to ``errors_path`` and a black
    image stands in; the caller then refuses the file."""

    def __init__(self, samples: list[tuple[str, int]], errors_path: str):
        self.samples = samples
        self.errors_path = errors_path

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        from PIL import Image

        path, label = self.samples[i]
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB")), int(label)
        except Exception as exc:  # noqa: BLE001 - reported by the parent
            with open(self.errors_path, "a") as f:
                f.write(f"{path}: {type(exc).__name__}: {exc}\n")
            return np.zeros((8, 8, 3), np.uint8), int(label)


class FolderDataset(Dataset):
    """Images in ``<data-root>/<folder_name>/<split_dirs[split]>/<class>/*``."""

    in_memory = False
    fixed_size = False
    beton_format = "jpg"
    beton_max_res = 512
    folder_name = "?"
    split_dirs = {"train": "train", "test": "val"}
    how_to_get = "put it there"  # the not-found hint, before "and point --data-root ..."

    def folder(self, split: str, data_root=None) -> Path:
        d = resolve_data_root(data_root) / self.folder_name / self.split_dirs[split]
        if not d.is_dir() or not any(d.iterdir()):
            raise UserError(
                f"dataset '{self.name}' not found: expected an ImageFolder layout in {d} (one folder per class); "
                f"{self.how_to_get}, and point --data-root / PROXBENCH_DATA at the folder holding "
                f"{self.folder_name}/")
        return d

    def source_files(self, split: str, data_root=None) -> list[Path]:
        return [self.folder(self.check_split(split), data_root)]

    def samples(self, split: str, data_root=None) -> list[tuple[str, int]]:
        """(path, class index) of every image, in ImageFolder order (listed once per object and split)."""
        import torchvision

        listed = self.__dict__.setdefault("listed", {})
        key = (split, str(resolve_data_root(data_root)))
        if key not in listed:
            listed[key] = torchvision.datasets.ImageFolder(str(self.folder(split, data_root))).samples
        return listed[key]

    def beton_fingerprint(self, split: str, data_root, old: dict | None) -> dict:
        root = self.folder(split, data_root)
        samples = self.samples(split, data_root)
        h = hashlib.sha256()
        for p, label in samples:
            st = os.stat(p)
            h.update(f"{os.path.relpath(p, root)}\t{label}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        return {"kind": "image-folder", "path": str(root), "files": len(samples), "sha256": h.hexdigest()}

    def beton_samples(self, split: str, data_root, errors_path: str):
        samples = self.samples(split, data_root)
        labels = np.array([c for _, c in samples], dtype=np.int64)
        return FolderSource(samples, errors_path), labels, None
