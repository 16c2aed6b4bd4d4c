"""The dataset registry: the ``Dataset`` base class, ``@register_dataset``, lookup by name.

A dataset is one registered class (see ``bench/data/datasets/`` for the built-in ones) that carries
everything the rest of ``bench`` asks about it: its shape, classes and split sizes, its normalisation
(mean/std per channel), how its files are found (``source_files``, ``locate``), and what FFCV
preparation stores (``beton_*``). Array datasets (decoded whole into uint8 arrays) subclass
``bench.data.arrays.ArrayDataset``; image-folder datasets ``bench.data.folders.FolderDataset``.

``list_datasets()`` lists the names in registration order (the default, ``fashion-mnist``, first);
``get_dataset(name, options)`` builds the dataset object with validated options; ``dataset_info`` its
``DatasetInfo``. An unknown name is a one-line ``UserError`` naming the valid ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.data.sources import download_allowed
from bench.errors import UserError
from bench.registry import Registry, unknown_name

DEFAULT_DATASET = "fashion-mnist"
SPLITS = ("train", "test")

__all__ = ["DatasetInfo", "Dataset", "register_dataset", "list_datasets", "get_dataset_class", "get_dataset",
           "dataset_info", "check_dataset", "DEFAULT_DATASET", "SPLITS"]


@dataclass(frozen=True)
class DatasetInfo:
    """What a model and a loader need to know about a dataset (sizes are the full splits)."""

    name: str
    num_classes: int
    in_chans: int
    img_size: int
    train_size: int
    test_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description: str
    options: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.in_chans, self.img_size, self.img_size)

    def split_size(self, split: str) -> int:
        return self.train_size if split == "train" else self.test_size


class Dataset:
    """A registered dataset. Subclasses set the class attributes below and override the hooks they need.

    Instances hold validated ``options`` (empty unless ``option_defaults`` declares some; then
    ``check_option`` converts and checks each value, and ``__init__`` may derive the shape from them)."""

    name = "?"  # set by @register_dataset
    num_classes: int
    in_chans: int
    img_size: int  # pixels, square (the loaders' output size)
    train_size: int
    test_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    description = ""
    option_defaults: dict[str, Any] = {}  # the options it takes, with their defaults
    split_aliases: dict[str, str] = {}  # other names of the two splits, e.g. {"val": "test"}
    in_memory = False  # decoded whole into arrays (the memory loader, load_split)
    fixed_size = True  # every stored image is img_size square (else: cropped by the loaders)
    downloadable = False  # a run may fetch missing files (when downloads are allowed)
    beton_format = "raw"  # default FFCV image storage: raw or jpg
    beton_max_res: int | None = None  # default longest side stored in a .beton (variable-size images)

    def __init__(self, options: dict[str, Any] | None = None):
        self.options = self.parse_options(options)

    def parse_options(self, options: dict[str, Any] | None) -> dict[str, Any]:
        if not self.option_defaults:
            if options:
                takers = [f"'{n}'" for n in list_datasets() if get_dataset_class(n).option_defaults]
                only = (f"only {takers[0]} does" if len(takers) == 1 else
                        f"only {', '.join(takers)} do" if takers else "none does")
                raise UserError(f"dataset '{self.name}' takes no options (got {', '.join(map(str, options))}); "
                                f"{only}")
            return {}
        opts = dict(self.option_defaults)
        for key, value in (options or {}).items():
            if key not in self.option_defaults:
                raise unknown_name(f"option of dataset '{self.name}'", key, list(self.option_defaults))
            opts[key] = self.check_option(key, value)
        return opts

    def check_option(self, key: str, value: Any) -> Any:
        """The value of option ``key`` to use, or a ``UserError`` saying why ``value`` is refused."""
        return value

    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo(self.name, self.num_classes, self.in_chans, self.img_size, self.train_size,
                           self.test_size, tuple(self.mean), tuple(self.std), self.description,
                           options=self.options)

    def check_split(self, split: str) -> str:
        """``train`` or ``test`` (after ``split_aliases``), else a ``UserError``."""
        split = self.split_aliases.get(split, split)
        if split not in SPLITS:
            raise unknown_name("split", split, SPLITS)
        return split

    # ---------------------------------------------------------------------------------- files

    def source_files(self, split: str, data_root=None) -> list[Path]:
        """The files (or the folder) a split is read from, provided if possible (a download), else a
        ``UserError`` saying where they belong and how to get them. [] when nothing is read."""
        return []

    def locate(self, data_root=None) -> tuple[str, str]:
        """(state, detail) of the files under ``data_root`` without writing or downloading anything:
        ("present", the folders holding them), ("missing", how to get them) or ("none needed", why)."""
        allowed = download_allowed()
        saved = os.environ.get("PROXBENCH_NO_DOWNLOAD")
        os.environ["PROXBENCH_NO_DOWNLOAD"] = "1"
        try:
            folders: list[str] = []
            for split in SPLITS:
                for path in self.source_files(split, data_root):
                    folder = str(path if path.is_dir() else path.parent)
                    if folder not in folders:
                        folders.append(folder)
        except (UserError, OSError) as exc:
            text = " ".join(str(exc).replace(" (downloads disabled by PROXBENCH_NO_DOWNLOAD)", "").split())
            if self.downloadable and allowed:
                text += "; or let a run download it (network needed)"
            return "missing", text
        finally:
            if saved is None:
                os.environ.pop("PROXBENCH_NO_DOWNLOAD", None)
            else:
                os.environ["PROXBENCH_NO_DOWNLOAD"] = saved
        return ("present", ", ".join(folders)) if folders else ("none needed", "no files")

    # ------------------------------------------------------------------------ FFCV preparation

    def beton_dirname(self) -> str:
        """The folder under ``<data-root>/ffcv/`` holding this dataset's ``.beton`` files."""
        return self.name

    def beton_fingerprint(self, split: str, data_root, old: dict | None) -> dict:
        """What a ``.beton`` manifest records of the source (a dict with a ``sha256``); ``old`` is the
        previous one (unchanged files need not be re-hashed). Raises ``UserError`` when it is missing."""
        raise NotImplementedError

    def beton_samples(self, split: str, data_root, errors_path: str):
        """(indexable of (HWC uint8 RGB image, int label), labels int64 array, stored image shape or None)."""
        raise NotImplementedError


DATASETS: Registry[type[Dataset]] = Registry("dataset", Dataset, label="bench.data.Dataset")
# ``@register_dataset(name)``, ``list_datasets(pattern)`` (registration order, the default first) and
# ``get_dataset_class(name)``: the registry's own, with its rules (``bench.registry``)
register_dataset, list_datasets, get_dataset_class = DATASETS.register, DATASETS.names, DATASETS.get


def get_dataset(name: str, options: dict[str, Any] | None = None) -> Dataset:
    """The dataset ``name`` with ``options`` validated (a ``UserError`` for an unknown name or option)."""
    return get_dataset_class(name)(options)


def dataset_info(name: str, options: dict[str, Any] | None = None) -> DatasetInfo:
    """The ``DatasetInfo`` of ``name`` with ``options`` (only datasets with ``option_defaults`` take any)."""
    return get_dataset(name, options).info


def check_dataset(name: str) -> str:
    get_dataset_class(name)
    return name


def source_files(name: str, split: str, data_root=None) -> list[Path]:
    """The files a split of ``name`` is read from (what a ``.beton`` manifest fingerprints); [] for
    generated data. Provides them if it can (a download), else a ``UserError`` saying how to get them."""
    ds = get_dataset(name)
    return ds.source_files(ds.check_split(split), data_root)
