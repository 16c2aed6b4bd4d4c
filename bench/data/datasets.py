"""Datasets and loaders.

Registry
    ``list_datasets()``, ``dataset_info(name, options)``: ``fashion-mnist`` (the default), ``cifar10``,
    ``cifar100``, ``imagenet`` (ImageFolder ``<root>/imagenet/{train,val}``) and ``synthetic`` (learnable
    random data of any shape, generated from a seed, for tests).

Files
    ``resolve_data_root(data_root)``: the explicit argument, then ``$PROXBENCH_DATA``, then
    ``~/.cache/proxbench/data``.  Fashion-MNIST is looked up in torchvision's layout
    (``<root>/FashionMNIST/raw``), then in Debian's ``dataset-fashion-mnist`` package
    (``/usr/share/datasets/fashion-mnist``, overridable with ``$PROXBENCH_DEBIAN_FMNIST``; decompressed once
    into ``<root>/FashionMNIST/raw``), then downloaded by torchvision when the network allows
    (``PROXBENCH_NO_DOWNLOAD=1`` forbids it).  CIFAR: torchvision's layout under the root, or a download.

Loaders (``build_loader``), all yielding ``(x float32 N×C×H×W normalised, y int64)`` on the device:

* ``memory``: the whole split as one uint8 tensor on the device; random crop (zero padding) + horizontal
  flip as one batched gather, normalisation fused.  Tens of times faster than a DataLoader on a CPU.
* ``torch``: a torchvision ``Dataset`` + ``DataLoader`` with ``RandomCrop(padding)``,
  ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize`` — the reference.
* ``ffcv``: ``.beton`` files read by FFCV (``bench/data/ffcv_loader.py``), prepared on first use.

``augment=False`` (the run config's ``augment = false``) keeps the per-epoch shuffle and drops crop and
flip (ImageNet: the validation centre crop instead of the random resized crop) in all three.

Determinism: epoch ``e`` of a loader built with ``seed`` is a pure function of ``(seed, e)``: the
``memory`` and ``ffcv`` loaders draw the order and every sample's crop offset and flip from a
``torch.Generator`` seeded with ``epoch_seed(seed, e)`` (:func:`epoch_plan`), indexed by sample, so
the two give *identical* batches, augmentation included.  The ``torch`` loader seeds its sampler and
its workers from ``(seed, e)`` (PyTorch's recipe), so it is deterministic for a given ``num_workers``;
with ``num_workers=0`` each sample's transform runs under a forked RNG seeded from
``(seed, e, index)``.  Without augmentation (``train=False``) all three give the same samples, labels
and pixel values (bit for bit: the same float32 operations as ``ToTensor`` + ``Normalize``).

``set_epoch(e)`` selects the epoch the next ``iter(loader)`` yields; each ``iter()`` then advances the
epoch by one, so forgetting ``set_epoch`` still gives a new order every epoch.
"""

from __future__ import annotations

import contextlib
import difflib
import gzip
import hashlib
import math
import os
import shutil
import socket
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from bench.atomic import atomic_write
from bench.errors import UserError

DEFAULT_DATASET = "fashion-mnist"
LOADERS = ("memory", "torch", "ffcv")
SPLITS = ("train", "test")
DEBIAN_FMNIST = "/usr/share/datasets/fashion-mnist"  # Debian package dataset-fashion-mnist
FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
ARRAY_DATASETS = ("fashion-mnist", "cifar10", "cifar100", "synthetic")

__all__ = [
    "DatasetInfo", "Loader", "list_datasets", "dataset_info", "resolve_data_root", "load_split",
    "build_loader", "epoch_seed", "epoch_plan", "default_padding", "source_files", "LOADERS",
    "DEFAULT_DATASET",
]


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

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


_CIFAR_MEAN, _CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
_CIFAR100_MEAN, _CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

_FIXED: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", 10, 1, 28, 60000, 10000, (0.2860,), (0.3530,),
        "Zalando Fashion-MNIST, 28x28 grayscale, 10 classes (apt-get install dataset-fashion-mnist)"),
    "cifar10": DatasetInfo(
        "cifar10", 10, 3, 32, 50000, 10000, _CIFAR_MEAN, _CIFAR_STD,
        "CIFAR-10, 32x32 RGB, 10 classes (torchvision layout cifar-10-batches-py)"),
    "cifar100": DatasetInfo(
        "cifar100", 100, 3, 32, 50000, 10000, _CIFAR100_MEAN, _CIFAR100_STD,
        "CIFAR-100, 32x32 RGB, 100 classes (torchvision layout cifar-100-python)"),
    "imagenet": DatasetInfo(
        "imagenet", 1000, 3, 224, 1281167, 50000, _IMAGENET_MEAN, _IMAGENET_STD,
        "ImageNet-1k (ILSVRC2012), ImageFolder layout <root>/imagenet/{train,val}, 224 px crops"),
}

SYNTHETIC_DEFAULTS: dict[str, int] = {
    "in_chans": 3,  # channels
    "img_size": 32,  # pixels, square
    "num_classes": 10,
    "train_size": 2048,  # samples
    "test_size": 512,  # samples
    "seed": 0,  # generator seed (the data, not the run)
}


def list_datasets() -> list[str]:
    """Registered dataset names, the default first."""
    return ["fashion-mnist", "cifar10", "cifar100", "imagenet", "synthetic"]


def _unknown(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> UserError:
    close = difflib.get_close_matches(str(name), list(valid), n=1, cutoff=0.5)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return UserError(f"unknown {kind} '{name}'{hint} (valid: {', '.join(valid)})")


def check_dataset(name: str) -> str:
    if name not in list_datasets():
        raise _unknown("dataset", name, list_datasets())
    return name


def _synthetic_options(options: dict[str, Any] | None) -> dict[str, int]:
    opts = dict(SYNTHETIC_DEFAULTS)
    for key, value in (options or {}).items():
        if key not in SYNTHETIC_DEFAULTS:
            raise _unknown("option of dataset 'synthetic'", key, list(SYNTHETIC_DEFAULTS))
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) and not (
                isinstance(value, str) and value.strip().lstrip("-").isdigit()):
            raise UserError(f"dataset option {key}={value!r} must be an integer")
        value = int(value)
        low = 0 if key == "seed" else (2 if key == "num_classes" else 1)
        if value < low:
            raise UserError(f"dataset option {key}={value} must be >= {low}")
        opts[key] = value
    return opts


def dataset_info(name: str, options: dict[str, Any] | None = None) -> DatasetInfo:
    """The registry entry of ``name``; ``options`` only for ``synthetic`` (see ``SYNTHETIC_DEFAULTS``)."""
    check_dataset(name)
    if name != "synthetic":
        if options:
            raise UserError(f"dataset '{name}' takes no options (got {', '.join(map(str, options))}); "
                            "only 'synthetic' does")
        return _FIXED[name]
    o = _synthetic_options(options)
    c = o["in_chans"]
    return DatasetInfo(
        "synthetic", o["num_classes"], c, o["img_size"], o["train_size"], o["test_size"],
        (0.5,) * c, (0.25,) * c,
        "random but learnable data (class templates + noise), any shape; for tests",
        options=o)


def _check_split(name: str, split: str) -> str:
    if name == "imagenet" and split == "val":
        return "test"
    if split not in SPLITS:
        raise _unknown("split", split, SPLITS)
    return split


def default_padding(img_size: int) -> int:
    """Random-crop padding: 4 px for CIFAR-sized images (>= 32 px), 2 px for 28x28, 1 px below 16."""
    if img_size >= 32:
        return 4
    return 2 if img_size >= 16 else 1


def augment_padding(info: DatasetInfo, pad: int | None, augment: bool) -> int:
    """The loaders' random-crop padding: 0 without augmentation, else ``pad`` (default :func:`default_padding`)."""
    if not augment:
        return 0
    return default_padding(info.img_size) if pad is None else int(pad)


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------

def resolve_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """``data_root``, else ``$PROXBENCH_DATA``, else ``~/.cache/proxbench/data`` (not created here)."""
    if data_root:
        return Path(data_root).expanduser()
    env = os.environ.get("PROXBENCH_DATA")
    if env:
        return Path(env).expanduser()
    return Path("~/.cache/proxbench/data").expanduser()


def debian_fmnist_dir() -> Path:
    return Path(os.environ.get("PROXBENCH_DEBIAN_FMNIST", DEBIAN_FMNIST))


def download_allowed() -> bool:
    return os.environ.get("PROXBENCH_NO_DOWNLOAD", "").strip().lower() in ("", "0", "false", "no")


def _atomic_copy_stream(src_open, dst: Path) -> None:
    """Write what ``src_open()`` yields to ``dst`` atomically (bench.atomic)."""

    def copy(out):
        with src_open() as src:
            shutil.copyfileobj(src, out, 1 << 20)

    atomic_write(dst, copy)


def _fmnist_missing(root: Path, why: str = "") -> UserError:
    return UserError(
        f"dataset 'fashion-mnist' not found under {root / 'FashionMNIST' / 'raw'} nor in "
        f"{debian_fmnist_dir()}{why}; get it with 'apt-get install dataset-fashion-mnist', or point "
        "--data-root / PROXBENCH_DATA at a folder holding FashionMNIST/raw/*-ubyte")


def _fmnist_dir(root: Path) -> Path:
    """The folder holding the 4 decompressed idx files, providing them if needed (see module doc)."""
    raw = root / "FashionMNIST" / "raw"
    names = [n for pair in FMNIST_FILES.values() for n in pair]
    if all((raw / n).is_file() for n in names):
        return raw
    # torchvision also keeps the .gz it downloaded; then Debian's package
    for src_dir in (raw, debian_fmnist_dir()):
        if all((raw / n).is_file() or (src_dir / f"{n}.gz").is_file() for n in names):
            try:
                for n in names:
                    if not (raw / n).is_file():
                        _atomic_copy_stream(lambda p=src_dir / f"{n}.gz": gzip.open(p, "rb"), raw / n)
                return raw
            except OSError as exc:
                if src_dir == raw:
                    continue
                # a read-only data root: read Debian's .gz files in place
                warnings.warn(f"cannot decompress Fashion-MNIST into {raw} ({exc}); reading {src_dir} directly")
                return src_dir
    if not download_allowed():
        raise _fmnist_missing(root, " (downloads disabled by PROXBENCH_NO_DOWNLOAD)")
    try:
        import torchvision

        with _socket_timeout(20):
            torchvision.datasets.FashionMNIST(str(root), train=True, download=True)
    except Exception as exc:  # network down, proxy, disk: all end in the same advice
        raise _fmnist_missing(root, f" and the download failed ({type(exc).__name__}: {exc})") from None
    if all((raw / n).is_file() for n in names):
        return raw
    raise _fmnist_missing(root)


class _socket_timeout:
    def __init__(self, seconds: float):
        self.seconds = seconds

    def __enter__(self):
        self.old = socket.getdefaulttimeout()
        socket.setdefaulttimeout(self.seconds)

    def __exit__(self, *exc):
        socket.setdefaulttimeout(self.old)


_CIFAR_DIRS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}


def _cifar_class(name: str):
    import torchvision

    return torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100


def _cifar_dataset(name: str, root: Path, split: str):
    cls = _cifar_class(name)
    train = split == "train"
    try:
        return cls(str(root), train=train, download=False)
    except RuntimeError:
        pass
    how = (f"dataset '{name}' not found under {root / _CIFAR_DIRS[name]} (torchvision layout); put the "
           f"extracted archive from https://www.cs.toronto.edu/~kriz/ there or point --data-root / "
           "PROXBENCH_DATA at its parent")
    if not download_allowed():
        raise UserError(how + " (downloads disabled by PROXBENCH_NO_DOWNLOAD)")
    try:
        with _socket_timeout(20):
            return cls(str(root), train=train, download=True)
    except Exception as exc:
        raise UserError(how + f"; the download failed ({type(exc).__name__}: {exc})") from None


def imagenet_dir(root: Path, split: str) -> Path:
    d = root / "imagenet" / ("train" if split == "train" else "val")
    if not d.is_dir() or not any(d.iterdir()):
        raise UserError(
            f"dataset 'imagenet' not found: expected an ImageFolder layout in {d} (one folder per class); "
            "download ILSVRC2012 from https://image-net.org (it cannot be fetched automatically), "
            "sort val/ into class folders, and point --data-root / PROXBENCH_DATA at the folder holding "
            "imagenet/")
    return d


def source_files(name: str, split: str, data_root=None) -> list[Path]:
    """The files a split is read from (what a ``.beton`` manifest fingerprints); [] for synthetic."""
    check_dataset(name)
    split = _check_split(name, split)
    root = resolve_data_root(data_root)
    if name == "fashion-mnist":
        d = _fmnist_dir(root)
        return [d / (n if (d / n).is_file() else f"{n}.gz") for n in FMNIST_FILES[split]]
    if name in _CIFAR_DIRS:
        # from torchvision's class attributes: constructing the dataset md5-checks and unpickles the split
        cls = _cifar_class(name)
        files = [root / cls.base_folder / f for f, _ in (cls.train_list if split == "train" else cls.test_list)]
        if not all(p.is_file() for p in files):
            _cifar_dataset(name, root, split)  # downloads them, or raises the error saying where to put them
        return files
    if name == "imagenet":
        return [imagenet_dir(root, split)]
    return []


# --------------------------------------------------------------------------------------------
# Array datasets: whole splits as uint8 tensors
# --------------------------------------------------------------------------------------------

def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise UserError(f"{path} is not an idx file of unsigned bytes (corrupt download?)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    count = int(np.prod(dims))
    offset = 4 + 4 * ndim
    if len(data) - offset != count:
        raise UserError(f"{path} is truncated or corrupt ({len(data) - offset} bytes of data, expected {count}); "
                        "delete it to have it re-created")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def synthetic_arrays(opts: dict[str, int], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic learnable data: each class is a fixed random low-frequency template; a sample is
    its class template plus per-pixel noise, stored as uint8 (N, C, H, W). Labels are balanced."""
    c, s, k = opts["in_chans"], opts["img_size"], opts["num_classes"]
    n = opts["train_size"] if split == "train" else opts["test_size"]
    g = torch.Generator().manual_seed(epoch_seed(opts["seed"], 0, "synthetic-templates"))
    grid = max(2, min(8, s // 4))
    templates = torch.randn(k, c, grid, grid, generator=g)
    templates = torch.nn.functional.interpolate(templates, size=(s, s), mode="bilinear", align_corners=False)
    templates = templates / templates.flatten(1).std(dim=1).clamp_min(1e-6).view(k, 1, 1, 1)
    gs = torch.Generator().manual_seed(epoch_seed(opts["seed"], 0, f"synthetic-{split}"))
    labels = (torch.arange(n) % k)[torch.randperm(n, generator=gs)]
    images = torch.empty(n, c, s, s, dtype=torch.uint8)
    for i in range(0, n, 1024):  # chunks bound the float memory for big shapes
        y = labels[i:i + 1024]
        x = 128.0 + 40.0 * templates[y] + 24.0 * torch.randn(len(y), c, s, s, generator=gs)
        images[i:i + 1024] = x.round_().clamp_(0, 255).to(torch.uint8)
    return images.numpy(), labels.numpy().astype(np.int64)


_ARRAY_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
_ARRAY_LOCK = threading.Lock()


def _file_key(paths: list[Path]) -> tuple:
    out = []
    for p in paths:
        st = p.stat()
        out.append((str(p), st.st_size, st.st_mtime_ns))
    return tuple(out)


def load_split(name: str, split: str, data_root=None, options: dict | None = None,
               subset: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole split of an array dataset: (uint8 N×C×H×W, int64 N), the first ``subset`` samples if given.

    Decoded splits are cached in the process (keyed by the files' size and mtime); the returned tensors
    share that cache, so treat them as read-only."""
    info = dataset_info(name, options)
    split = _check_split(name, split)
    if name == "imagenet":
        raise UserError("dataset 'imagenet' is too large to hold in memory: use loader 'torch' or 'ffcv'")
    if subset is not None and int(subset) <= 0:
        raise UserError(f"subset must be a positive number of samples, got {subset}")
    if name == "synthetic":
        key = ("synthetic", split, tuple(sorted(info.options.items())))
    else:
        files = source_files(name, split, data_root)
        key = (name, split, _file_key(files))
    with _ARRAY_LOCK:
        cached = _ARRAY_CACHE.get(key)
    if cached is None:
        if name == "synthetic":
            x, y = synthetic_arrays(info.options, split)
        elif name == "fashion-mnist":
            x = _read_idx(files[0])[:, None]
            y = _read_idx(files[1]).astype(np.int64)
            if len(x) != len(y):
                raise UserError(f"{files[0]} and {files[1]} disagree on the number of samples")
        else:
            ds = _cifar_dataset(name, resolve_data_root(data_root), split)
            x = np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2))
            y = np.asarray(ds.targets, dtype=np.int64)
        cached = (torch.from_numpy(np.array(x, copy=True, order="C")),
                  torch.from_numpy(np.array(y, copy=True, order="C")))
        with _ARRAY_LOCK:
            for k in [k for k in _ARRAY_CACHE if k[:2] == key[:2]]:
                del _ARRAY_CACHE[k]  # an older version of the same split
            _ARRAY_CACHE[key] = cached
    x, y = cached
    if subset is not None:
        x, y = x[: int(subset)], y[: int(subset)]
    return x, y


# --------------------------------------------------------------------------------------------
# Determinism: one plan per (seed, epoch)
# --------------------------------------------------------------------------------------------

def epoch_seed(seed: int, epoch: int, stream: str = "") -> int:
    """A 63-bit seed that is a pure function of (seed, epoch, stream) — never of the global RNG."""
    digest = hashlib.blake2b(f"proxbench:{int(seed)}:{int(epoch)}:{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


@dataclass
class EpochPlan:
    """Epoch ``epoch``'s sample order and per-sample augmentation (indexed by sample, not position)."""

    epoch: int
    order: torch.Tensor  # int64 (N,): sample indices in the order they are served
    dy: torch.Tensor | None  # int64 (N,): crop row offset in [0, 2*pad] (pad = no shift)
    dx: torch.Tensor | None  # int64 (N,): crop column offset in [0, 2*pad]
    flip: torch.Tensor | None  # bool (N,): horizontal flip

    def to(self, device) -> "EpochPlan":
        def mv(t):
            return None if t is None else t.to(device, non_blocking=True)
        return EpochPlan(self.epoch, mv(self.order), mv(self.dy), mv(self.dx), mv(self.flip))


def epoch_plan(num_samples: int, seed: int, epoch: int, *, train: bool, pad: int = 0,
               flip: bool = True) -> EpochPlan:
    """Order + augmentation of one epoch, drawn on the CPU from a generator seeded by (seed, epoch), so
    the same on every device. ``train=False``: sequential order, no augmentation."""
    if not train:
        return EpochPlan(epoch, torch.arange(num_samples), None, None, None)
    g = torch.Generator().manual_seed(epoch_seed(seed, epoch, "plan"))
    order = torch.randperm(num_samples, generator=g)
    dy = torch.randint(0, 2 * pad + 1, (num_samples,), generator=g) if pad > 0 else None
    dx = torch.randint(0, 2 * pad + 1, (num_samples,), generator=g) if pad > 0 else None
    fl = (torch.rand(num_samples, generator=g) < 0.5) if flip else None
    return EpochPlan(epoch, order, dy, dx, fl)


@contextlib.contextmanager
def intra_op_threads(n: int | None, device: torch.device):
    """Run a batch's small tensor ops with ``n`` intra-op threads (CPU only; per calling thread).

    A batch is a few hundred thousand bytes: a second thread gains little, and on a busy CPU each
    parallel op can wait a whole scheduler timeslice for it (measured 50-100x slower on a loaded 2-core
    machine), so the loaders use 1 by default. Restored on exit, so the training step is unaffected."""
    if n is None or device.type != "cpu":
        yield
        return
    old = torch.get_num_threads()
    if old != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if old != n:
            torch.set_num_threads(old)


class Normalizer:
    """uint8 -> float32 ``(x / 255 - mean) / std`` per channel: the same float32 operations, in the
    same order, as torchvision's ``ToTensor`` + ``Normalize``, so every loader gives the same bits,
    on the CPU and on CUDA alike."""

    def __init__(self, mean, std, device):
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        # a tensor, not the number 255: CUDA divides by a Python scalar as a multiplication by its
        # reciprocal (1 ulp off); a tensor divisor is a true IEEE division on every device
        self.k255 = torch.tensor(255.0, dtype=torch.float32, device=device)

    def __call__(self, x: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        out = torch.empty(x.shape, dtype=torch.float32, device=x.device, memory_format=fmt)
        out.copy_(x)
        return out.div_(self.k255).sub_(self.mean).div_(self.std)


def crop_flip(padded: torch.Tensor, rows: torch.Tensor | None, size: tuple[int, int],
              dy: torch.Tensor | None, dx: torch.Tensor | None, flip: torch.Tensor | None) -> torch.Tensor:
    """Random crop + flip as one batched gather.

    ``padded``: uint8 (M, C, H + 2p, W + 2p); ``rows``: which of its M images (None = all, in order);
    ``dy``/``dx``: per-image crop offsets in [0, 2p]; ``flip``: per-image horizontal flip mask.
    Crop at offset (p, p) without flip is the identity on the unpadded image."""
    h, w = size
    if rows is None:
        rows = torch.arange(padded.shape[0], device=padded.device)
    if dy is None:
        p = (padded.shape[2] - h) // 2
        x = padded[rows, :, p:p + h, p:p + w]
    else:
        windows = padded.unfold(2, h, 1).unfold(3, w, 1)  # (M, C, 2p+1, 2p+1, H, W): a view
        x = windows[rows, :, dy, dx]  # (B, C, H, W)
    if flip is not None:
        sel = flip.nonzero().squeeze(1)
        if sel.numel():
            x[sel] = x[sel].flip(3)
    return x


# --------------------------------------------------------------------------------------------
# Loaders
# --------------------------------------------------------------------------------------------

class Loader:
    """Common contract: ``len()`` batches, ``iter()`` -> (x, y) on the device, ``set_epoch``, ``num_samples``."""

    kind = "?"

    def __init__(self, info: DatasetInfo, split: str, *, batch_size: int, train: bool, device, seed: int,
                 num_samples: int):
        self.info = info
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

    def _next_epoch(self) -> int:
        e = self.epoch
        self.epoch += 1
        return e

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.info.name}/{self.split}, {self.num_samples} samples, "
                f"batch {self.batch_size}, train={self.train}, device={self.device})")


class MemoryLoader(Loader):
    """The whole split as one uint8 tensor on the device; crop+flip+normalise as batched tensor ops."""

    kind = "memory"

    def __init__(self, info, split, *, batch_size, train, device, seed, data_root, subset, options,
                 channels_last=False, pad=None, augment=True):
        images, labels = load_split(info.name, split, data_root, options, subset)
        super().__init__(info, split, batch_size=batch_size, train=train, device=device, seed=seed,
                         num_samples=len(labels))
        self.size = tuple(images.shape[2:])
        self.flip = bool(augment)
        self.pad = augment_padding(info, pad, augment)
        self.channels_last = bool(channels_last)
        if self.train and self.pad:
            p = self.pad
            # pad on the CPU (one copy), then move: the padded split is what the gather reads
            images = torch.nn.functional.pad(images, (p, p, p, p))
        self.images = images.to(self.device).contiguous()
        self.labels = labels.to(self.device)
        self.normalize = Normalizer(info.mean, info.std, self.device)
        self.threads = 1  # intra-op threads for a batch's ops (see intra_op_threads)

    def __iter__(self):
        epoch = self._next_epoch()
        plan = epoch_plan(self.num_samples, self.seed, epoch, train=self.train, pad=self.pad,
                          flip=self.flip).to(self.device)
        return self._batches(plan)

    def _batches(self, plan: EpochPlan):
        b = self.batch_size
        for i in range(len(self)):
            with intra_op_threads(self.threads, self.device):
                if not self.train:
                    x = self.images[i * b:(i + 1) * b]
                    y = self.labels[i * b:(i + 1) * b]
                else:
                    idx = plan.order[i * b:(i + 1) * b]
                    x = crop_flip(self.images, idx, self.size,
                                  None if plan.dy is None else plan.dy[idx],
                                  None if plan.dx is None else plan.dx[idx],
                                  None if plan.flip is None else plan.flip[idx])
                    y = self.labels[idx]
                x = self.normalize(x, self.channels_last)
            yield x, y


class _TorchArrayDataset(torch.utils.data.Dataset):
    """(C,H,W) uint8 samples served as PIL images through torchvision transforms."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, transform, seed: int):
        self.images = images.numpy()
        self.labels = labels.numpy()
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.gray = images.shape[1] == 1

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        a = self.images[i]
        img = Image.fromarray(a[0] if self.gray else a.transpose(1, 2, 0))
        if torch.utils.data.get_worker_info() is None and self.transform.random:
            # in the main process: never touch the caller's RNG, seed per (seed, epoch, sample)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(epoch_seed(self.seed, self.epoch, f"sample{i}"))
                x = self.transform(img)
        else:
            x = self.transform(img)
        return x, int(self.labels[i])


class _Transform:
    def __init__(self, ops, random: bool):
        import torchvision.transforms as T

        self.compose = T.Compose(ops)
        self.random = random

    def __call__(self, img):
        return self.compose(img)


def _seed_worker(worker_id: int) -> None:
    """DataLoader workers: torch is already seeded with base_seed + id; seed numpy/random from it."""
    import random

    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


class TorchLoader(Loader):
    """torchvision Dataset + DataLoader: the reference the fast loaders are measured against."""

    kind = "torch"

    def __init__(self, info, split, *, batch_size, train, device, seed, data_root, subset, options,
                 num_workers=2, channels_last=False, pad=None, augment=True):
        import torchvision
        import torchvision.transforms as T

        norm = [T.ToTensor(), T.Normalize(info.mean, info.std)]
        if info.name == "imagenet":
            root = imagenet_dir(resolve_data_root(data_root), split)
            ops = ([T.RandomResizedCrop(info.img_size), T.RandomHorizontalFlip()] if train and augment
                   else [T.Resize(int(round(info.img_size * 256 / 224))), T.CenterCrop(info.img_size)])
            ds = torchvision.datasets.ImageFolder(str(root), transform=_Transform(ops + norm, train))
            if subset is not None:
                ds = torch.utils.data.Subset(ds, range(min(int(subset), len(ds))))
            self.dataset = ds
            self._epoch_target = None
            n = len(ds)
        else:
            images, labels = load_split(info.name, split, data_root, options, subset)
            p = augment_padding(info, pad, augment)
            ops = ([T.RandomCrop(info.img_size, padding=p), T.RandomHorizontalFlip()] if train and augment and p
                   else [T.RandomHorizontalFlip()] if train and augment else [])
            self.dataset = _TorchArrayDataset(images, labels, _Transform(ops + norm, bool(ops)), seed)
            self._epoch_target = self.dataset
            n = len(labels)
        super().__init__(info, split, batch_size=batch_size, train=train, device=device, seed=seed,
                         num_samples=n)
        self.num_workers = int(num_workers)
        self.channels_last = bool(channels_last)

    def __iter__(self):
        epoch = self._next_epoch()
        if self._epoch_target is not None:
            self._epoch_target.epoch = epoch
        g_order = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, "torch-order"))
        g_workers = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, "torch-workers"))
        sampler = (torch.utils.data.RandomSampler(self.dataset, generator=g_order) if self.train
                   else torch.utils.data.SequentialSampler(self.dataset))
        # a fresh DataLoader per epoch (no persistent workers): worker seeds come from (seed, epoch)
        dl = torch.utils.data.DataLoader(
            self.dataset, batch_size=self.batch_size, sampler=sampler, drop_last=self.drop_last,
            num_workers=self.num_workers, generator=g_workers, worker_init_fn=_seed_worker,
            pin_memory=self.device.type == "cuda")
        return self._batches(dl)

    def _batches(self, dl):
        cuda = self.device.type == "cuda"
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        for x, y in dl:
            if cuda or self.channels_last:
                x = x.to(self.device, non_blocking=cuda, memory_format=fmt)
                y = y.to(self.device, non_blocking=cuda)
            yield x, y


def build_loader(name: str, split: str, *, loader: str = "memory", batch_size: int, train: bool,
                 device="cpu", seed: int = 0, data_root=None, subset: int | None = None, num_workers: int = 2,
                 options: dict | None = None, channels_last: bool = False, pad: int | None = None,
                 augment: bool = True) -> Loader:
    """A loader over ``name``/``split`` (see the module doc for the three kinds and their guarantees).

    ``train=True``: shuffled, augmented (random crop with ``pad`` px zero padding, default
    :func:`default_padding`, + horizontal flip; ImageNet: random resized crop + flip), last partial batch
    dropped; ``augment=False`` keeps the shuffle and drops the augmentation (ImageNet: the val centre crop).
    ``train=False``: sequential, un-augmented, last partial batch kept.
    ``channels_last``: yield channels-last tensors (for CUDA + channels-last models)."""
    info = dataset_info(name, options)
    split = _check_split(name, split)
    if loader not in LOADERS:
        raise _unknown("loader", loader, LOADERS)
    if isinstance(batch_size, bool) or int(batch_size) <= 0:
        raise UserError(f"batch size must be a positive integer, got {batch_size}")
    if subset is not None and int(subset) <= 0:
        raise UserError(f"subset must be a positive number of samples, got {subset}")
    if int(num_workers) < 0:
        raise UserError(f"num_workers must be >= 0, got {num_workers}")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' requested but no CUDA device is available")
    kw = dict(batch_size=batch_size, train=train, device=device, seed=seed, data_root=data_root,
              subset=subset, options=options, channels_last=channels_last, pad=pad, augment=augment)
    if loader == "memory":
        if name == "imagenet":
            raise UserError("loader 'memory' cannot hold 'imagenet' (too large): use loader 'ffcv' or 'torch'")
        return MemoryLoader(info, split, **kw)
    if loader == "torch":
        return TorchLoader(info, split, num_workers=num_workers, **kw)
    from bench.data.ffcv_loader import FFCVLoader

    return FFCVLoader(info, split, num_workers=num_workers, **kw)
