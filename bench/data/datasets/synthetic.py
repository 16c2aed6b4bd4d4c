"""Synthetic data: random but learnable images of any shape, generated from a seed (for tests and perf).

Each class is a fixed random low-frequency template (Gaussian noise on a small grid, bilinearly upsampled,
scaled to unit std); a sample is ``128 + 40·template + 24·noise``, rounded and clipped to uint8. Labels are
balanced and shuffled. Options (``data_options``): the shape, the class count, the split sizes, the seed.
Each is bounded (``OPTION_MAX``) and a split's uint8 array must fit in ``MAX_SPLIT_BYTES``: the split is
generated in memory and every loader holds it there (``img_size`` 1024 is above any registered model's input,
ViT's 384 included; a 3×1024×1024 sample is already 3 MiB of uint8 and ~12 MiB of float32 per layer input).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from bench.data.arrays import ArrayDataset
from bench.data.registry import register_dataset
from bench.errors import UserError

SYNTHETIC_DEFAULTS: dict[str, int] = {
    "in_chans": 3,  # channels
    "img_size": 32,  # pixels, square
    "num_classes": 10,
    "train_size": 2048,  # samples
    "test_size": 512,  # samples
    "seed": 0,  # generator seed (the data, not the run)
}

OPTION_MAX: dict[str, int] = {"in_chans": 64, "img_size": 1024, "num_classes": 100_000, "train_size": 10_000_000,
                              "test_size": 10_000_000, "seed": 2**32 - 1}
MAX_SPLIT_BYTES = 8 << 30  # 8 GiB of uint8 images per split


def synthetic_arrays(opts: dict[str, int], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic learnable data: each class is a fixed random low-frequency template; a sample is
    its class template plus per-pixel noise, stored as uint8 (N, C, H, W). Labels are balanced."""
    import torch  # here, not at the top: listing the datasets needs no torch

    from bench.data.plan import epoch_seed

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


@register_dataset("synthetic")
class Synthetic(ArrayDataset):
    description = "random but learnable data (class templates + noise), any shape; for tests"
    option_defaults = SYNTHETIC_DEFAULTS

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)
        o = self.options
        for split in ("train", "test"):
            size = o[f"{split}_size"] * o["in_chans"] * o["img_size"] ** 2
            if size > MAX_SPLIT_BYTES:
                raise UserError(f"dataset options: a {split} split of {o[f'{split}_size']} samples of "
                                f"{o['in_chans']}x{o['img_size']}x{o['img_size']} is {size / 2**30:.1f} GiB, over the "
                                f"{MAX_SPLIT_BYTES >> 30} GiB the synthetic dataset holds in memory")
        self.num_classes, self.in_chans, self.img_size = o["num_classes"], o["in_chans"], o["img_size"]
        self.train_size, self.test_size = o["train_size"], o["test_size"]
        self.mean, self.std = (0.5,) * self.in_chans, (0.25,) * self.in_chans

    def check_option(self, key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) and not (
                isinstance(value, str) and value.strip().lstrip("-").isdigit()):
            raise UserError(f"dataset option {key}={value!r} must be an integer")
        value = int(value)
        low = 0 if key == "seed" else (2 if key == "num_classes" else 1)
        if not low <= value <= OPTION_MAX[key]:
            raise UserError(f"dataset option {key}={value} must be in [{low}, {OPTION_MAX[key]}]")
        return value

    def locate(self, data_root=None) -> tuple[str, str]:
        return "none needed", "generated from a seed"

    def cache_key(self, split: str, data_root=None) -> tuple:
        return ("synthetic", split, tuple(sorted(self.options.items())))

    def decode(self, split: str, data_root=None) -> tuple[np.ndarray, np.ndarray]:
        return synthetic_arrays(self.options, split)

    def beton_dirname(self) -> str:
        """``synthetic``, or ``synthetic-<hash of the options>`` for non-default options."""
        if self.options == SYNTHETIC_DEFAULTS:
            return "synthetic"
        tag = hashlib.sha256(json.dumps(self.options, sort_keys=True).encode()).hexdigest()[:10]
        return f"synthetic-{tag}"

    def beton_fingerprint(self, split: str, data_root, old: dict | None) -> dict:
        xt, yt = self.arrays(split)  # cached: generated once
        h = hashlib.sha256(xt.numpy().tobytes())
        h.update(yt.numpy().tobytes())
        return {"kind": "generated", "generator": "bench.data.synthetic_arrays", "options": self.options,
                "sha256": h.hexdigest()}
