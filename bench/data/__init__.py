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

Importing ``bench.data`` registers the built-in datasets without importing torch (``python -m bench
datasets`` answers without it); the names that need torch (loaders, arrays, the epoch plan) are imported when
first used (the loader names register the built-in loaders first). The names below are its public API.
"""

import importlib

from bench.data import datasets  # noqa: F401  (registers the built-in datasets)
from bench.data.folders import FolderDataset
from bench.data.registry import (DEFAULT_DATASET, SPLITS, Dataset, DatasetInfo, check_dataset, dataset_info,
                                 get_dataset, get_dataset_class, list_datasets, register_dataset, source_files)
from bench.data.sources import download_allowed, resolve_data_root

# name -> the module that defines it, imported at first use (each of them imports torch)
_LAZY = {"ArrayDataset": "arrays", "load_split": "arrays", "Loader": "loaders", "build_loader": "loaders",
         "get_loader_class": "loaders", "list_loaders": "loaders", "register_loader": "loaders",
         "default_padding": "plan", "epoch_plan": "plan", "epoch_seed": "plan"}


def __getattr__(name: str):
    if name in _LAZY:
        if _LAZY[name] == "loaders":  # the built-in loaders register themselves, in list order
            importlib.import_module("bench.data.memory")
            importlib.import_module("bench.data.torch_loader")
            importlib.import_module("bench.data.ffcv_loader")
        return getattr(importlib.import_module(f"bench.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'bench.data' has no attribute {name!r}")


__all__ = [
    "ArrayDataset", "Dataset", "DatasetInfo", "FolderDataset", "Loader", "DEFAULT_DATASET", "SPLITS",
    "build_loader", "check_dataset", "dataset_info", "default_padding", "download_allowed", "epoch_plan",
    "epoch_seed", "get_dataset", "get_dataset_class", "get_loader_class", "list_datasets", "list_loaders",
    "load_split", "register_dataset", "register_loader", "resolve_data_root", "source_files",
]
