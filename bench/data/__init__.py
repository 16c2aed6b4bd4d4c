"""Datasets and loaders.

* ``bench.data.registry``: the dataset registry (``Dataset``, ``register_dataset``, ``list_datasets``,
  ``get_dataset``, ``dataset_info``); the built-in datasets are one class each in ``bench.data.datasets``.
* ``bench.data.sources``: the data root, downloads, file fingerprints.
* ``bench.data.arrays`` / ``bench.data.folders``: the two kinds of dataset (decoded whole into arrays, or an
  image folder); ``load_split``.
* ``bench.data.plan``: the per-(seed, epoch) order and augmentation, normalisation.
* ``bench.data.loaders``: the loader registry (``Loader``, ``register_loader``, ``list_loaders``,
  ``build_loader``); the ``memory``, ``torch`` and ``ffcv`` loaders in their own modules.
* ``bench.data.beton`` / ``bench.data.prepare``: FFCV ``.beton`` files and their preparation.

Importing ``bench.data`` registers the built-in datasets and loaders; the names below are its public API.
"""

from bench.data import datasets  # noqa: F401  (registers the built-in datasets)
from bench.data import memory, torch_loader, ffcv_loader  # noqa: F401, I001  (registers the loaders, in list order)
from bench.data.arrays import ArrayDataset, load_split
from bench.data.folders import FolderDataset
from bench.data.loaders import Loader, build_loader, get_loader_class, list_loaders, register_loader
from bench.data.plan import default_padding, epoch_plan, epoch_seed
from bench.data.registry import (DEFAULT_DATASET, SPLITS, Dataset, DatasetInfo, check_dataset, dataset_info,
                                 get_dataset, get_dataset_class, list_datasets, register_dataset, source_files)
from bench.data.sources import download_allowed, resolve_data_root

__all__ = [
    "ArrayDataset", "Dataset", "DatasetInfo", "FolderDataset", "Loader", "DEFAULT_DATASET", "SPLITS",
    "build_loader", "check_dataset", "dataset_info", "default_padding", "download_allowed", "epoch_plan",
    "epoch_seed", "get_dataset", "get_dataset_class", "get_loader_class", "list_datasets", "list_loaders",
    "load_split", "register_dataset", "register_loader", "resolve_data_root", "source_files",
]
