"""Fashion-MNIST (Zalando): 28×28 grayscale, 10 classes, 60000 + 10000 images, the default dataset.

Looked up in torchvision's layout (``<root>/FashionMNIST/raw``, the four decompressed idx files, or the
``.gz`` torchvision downloaded), then in Debian's ``dataset-fashion-mnist`` package
(``/usr/share/datasets/fashion-mnist``, overridable with ``$PROXBENCH_DEBIAN_FMNIST``; decompressed once into
``<root>/FashionMNIST/raw``, or read in place when the root is read-only), then downloaded by torchvision
when allowed. idx format: 3 zero/type bytes (``00 00 08``: unsigned bytes), the number of dimensions, each
dimension as a big-endian uint32, then the data.
"""

from __future__ import annotations

import gzip
import os
import warnings
from pathlib import Path

import numpy as np

from bench.data.arrays import ArrayDataset
from bench.data.registry import register_dataset
from bench.data.sources import atomic_copy_stream, download_allowed, resolve_data_root, socket_timeout
from bench.errors import UserError

DEBIAN_FMNIST = "/usr/share/datasets/fashion-mnist"  # Debian package dataset-fashion-mnist
FMNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def debian_fmnist_dir() -> Path:
    return Path(os.environ.get("PROXBENCH_DEBIAN_FMNIST", DEBIAN_FMNIST))


def read_idx(path: Path) -> np.ndarray:
    """An idx file of unsigned bytes (plain or .gz) as an array of its dimensions."""
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


def _missing(root: Path, why: str = "") -> UserError:
    return UserError(
        f"dataset 'fashion-mnist' not found under {root / 'FashionMNIST' / 'raw'} nor in "
        f"{debian_fmnist_dir()}{why}; get it with 'apt-get install dataset-fashion-mnist', or point "
        "--data-root / PROXBENCH_DATA at a folder holding FashionMNIST/raw/*-ubyte")


def fmnist_dir(root: Path) -> Path:
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
                        atomic_copy_stream(lambda p=src_dir / f"{n}.gz": gzip.open(p, "rb"), raw / n)
                return raw
            except OSError as exc:
                if src_dir == raw:
                    continue
                # a read-only data root: read Debian's .gz files in place
                warnings.warn(f"cannot decompress Fashion-MNIST into {raw} ({exc}); reading {src_dir} directly")
                return src_dir
    if not download_allowed():
        raise _missing(root, " (downloads disabled by PROXBENCH_NO_DOWNLOAD)")
    try:
        import torchvision

        with socket_timeout(20):
            torchvision.datasets.FashionMNIST(str(root), train=True, download=True)
    except Exception as exc:  # network down, proxy, disk: all end in the same advice
        raise _missing(root, f" and the download failed ({type(exc).__name__}: {exc})") from None
    if all((raw / n).is_file() for n in names):
        return raw
    raise _missing(root)


@register_dataset("fashion-mnist")
class FashionMNIST(ArrayDataset):
    num_classes, in_chans, img_size, train_size, test_size = 10, 1, 28, 60000, 10000
    mean, std = (0.2860,), (0.3530,)
    description = "Zalando Fashion-MNIST, 28x28 grayscale, 10 classes (apt-get install dataset-fashion-mnist)"
    downloadable = True

    def source_files(self, split: str, data_root=None) -> list[Path]:
        d = fmnist_dir(resolve_data_root(data_root))
        return [d / (n if (d / n).is_file() else f"{n}.gz") for n in FMNIST_FILES[self.check_split(split)]]

    def decode(self, split: str, data_root=None) -> tuple[np.ndarray, np.ndarray]:
        images, labels = self.source_files(split, data_root)
        x = read_idx(images)[:, None]
        y = read_idx(labels).astype(np.int64)
        if len(x) != len(y):
            raise UserError(f"{images} and {labels} disagree on the number of samples")
        return x, y

    def locate(self, data_root=None) -> tuple[str, str]:
        """Found only in Debian's package: reported there (a run decompresses it into the data root)."""
        raw = resolve_data_root(data_root) / "FashionMNIST" / "raw"
        names = [n for pair in FMNIST_FILES.values() for n in pair]
        debian = debian_fmnist_dir()
        if not all((raw / n).is_file() for n in names) and all((debian / f"{n}.gz").is_file() for n in names):
            return "present", f"{debian} (Debian package; a run decompresses it into the data root)"
        return super().locate(data_root)
