"""Corrupted test sets for the robustness track (BiBench's "corruption robustness", after CIFAR-10-C).

BiBench (Qin et al., ICML 2023) evaluates a binarized model on CIFAR-10-C (Hendrycks & Dietterich, ICLR
2019): the clean test split under 15 + 4 corruption kinds at 5 severities each. Here the corrupted sets are
made from the clean test split of any array dataset (Fashion-MNIST, CIFAR-10/100, synthetic), with the
parameters of Hendrycks' ``make_cifar_c.py`` for each severity, by torch / torchvision functional ops
(``torchvision.transforms.v2.functional``: ``gaussian_blur``, ``jpeg``; the defocus disk by
``torch.nn.functional.conv2d``; reflected borders, replicated on images smaller than the kernel):

========================  =====================================================================
kind                      what it does to x ∈ [0, 1] at severity s (c = the severity's parameter)
========================  =====================================================================
gaussian_noise            x + N(0, c²), c = 0.04 0.06 0.08 0.09 0.10
shot_noise                Poisson(x·c) / c, c = 500 250 100 75 50
impulse_noise             salt and pepper on a fraction c = .01 .02 .03 .05 .07 of the pixels
speckle_noise             x + x·N(0, c²), c = .06 .10 .12 .16 .20
defocus_blur              a disk of radius r, blurred by a 3×3 Gaussian of σ a, (r, a) = (.3, .4) (.4, .5)
                          (.5, .6) (1, .2) (1.5, .1)
gaussian_blur             Gaussian of σ = .4 .6 .7 .8 1 (kernel 2⌈4σ⌉ + 1, reflected borders)
brightness                x + c (the HSV value; grayscale: the pixel), c = .05 .1 .15 .2 .3
contrast                  (x − m)·c + m, m the image's mean per channel, c = .75 .5 .4 .3 .15
pixelate                  box-downscaled to ⌊size·c⌋ and back (nearest), c = .95 .9 .85 .75 .65
jpeg_compression          JPEG at quality c = 80 65 58 50 40
========================  =====================================================================

Left out, with why: glass_blur (a per-pixel Python loop of local swaps, minutes per set, and its
iterations make the sets order-dependent), motion_blur, snow (ImageMagick's motion blur through Wand, no
functional op in torch/torchvision), zoom_blur (a stack of 5–8 zoomed copies per image: the cost of a whole
evaluation per severity), frost (needs Hendrycks' frost photographs), fog (a plasma fractal sized for 32 px
colour scenes), spatter and saturate (colour/liquid effects that mean nothing on grayscale garments) and
elastic_transform (cv2 affine + scipy map_coordinates; its displacement field is defined for 32 px).

Every set is deterministic: the sample subset (``subset`` images of the test split, drawn without
replacement) and the corruption's noise come from a ``torch.Generator`` seeded by the SHA-256 of
``"<dataset>/<kind>/<severity>"`` on the CPU, independent of the run's seed, so every method and seed is
evaluated on the same images. The corrupted images are stored as uint8 (as CIFAR-10-C is) and normalised like
the clean test split.
"""

from __future__ import annotations

import hashlib
import math
import warnings

import torch
from torch.nn import functional as TF
from torchvision.transforms.v2 import functional as F

from bench.errors import UserError
from bench.registry import close_match_hint

SEVERITIES = (1, 2, 3, 4, 5)
SUBSET = 500  # test images per (kind, severity): 10 kinds × 5 severities × 500 = 25 000 images per model

_PARAMS = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "speckle_noise": (0.06, 0.10, 0.12, 0.16, 0.20),
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    "jpeg_compression": (80, 65, 58, 50, 40),
}
CORRUPTIONS = tuple(_PARAMS)


def _gaussian_noise(x, c, g):
    return x + torch.randn(x.shape, generator=g) * c


def _shot_noise(x, c, g):
    return torch.poisson(x * c, generator=g) / c


def _impulse_noise(x, c, g):
    u = torch.rand(x.shape, generator=g)
    return torch.where(u < c / 2, 0.0, torch.where(u < c, 1.0, x))


def _speckle_noise(x, c, g):
    return x + x * torch.randn(x.shape, generator=g) * c


def _pad(x, reach):
    """Reflected borders (cv2's BORDER_REFLECT_101, as Hendrycks' filter2D) where the image is large enough."""
    return TF.pad(x, (reach,) * 4, mode="reflect" if reach < min(x.shape[2:]) else "replicate")


def _defocus_blur(x, c, g):
    radius, alias = c
    # Hendrycks' 17×17 aliased disk, cropped to where it is not zero: the disk plus the 3×3 blur's one pixel
    reach = math.ceil(radius) + 1
    axis = torch.arange(-reach, reach + 1, dtype=torch.float32)
    disk = ((axis[:, None] ** 2 + axis[None, :] ** 2) <= radius ** 2).float()
    disk = F.gaussian_blur(disk[None], [3, 3], [alias])[0]
    disk = disk / disk.sum()
    channels = x.shape[1]
    kernel = disk.expand(channels, 1, *disk.shape)
    return TF.conv2d(_pad(x, reach), kernel, groups=channels)


def _gaussian_blur(x, c, g):
    reach = math.ceil(4 * c)  # skimage's truncate = 4
    if reach < min(x.shape[2:]):
        return F.gaussian_blur(x, [2 * reach + 1] * 2, [c, c])
    axis = torch.arange(-reach, reach + 1, dtype=torch.float32)
    bell = torch.exp(-axis ** 2 / (2 * c * c))
    bell = bell / bell.sum()
    channels = x.shape[1]
    kernel = (bell[:, None] * bell[None, :]).expand(channels, 1, 2 * reach + 1, 2 * reach + 1)
    return TF.conv2d(_pad(x, reach), kernel, groups=channels)


def _brightness(x, c, g):
    return x + c


def _contrast(x, c, g):
    mean = x.mean(dim=(2, 3), keepdim=True)
    return (x - mean) * c + mean


def _pixelate(x, c, g):
    h, w = x.shape[2:]
    small = TF.interpolate(x, size=(int(h * c), int(w * c)), mode="area")
    return TF.interpolate(small, size=(h, w), mode="nearest")


def _jpeg(x, c, g):
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its JPEG codec in favour of TorchCodec
        warnings.simplefilter("ignore", DeprecationWarning)
        return F.jpeg(_to_uint8(x), quality=int(c)).float() / 255.0


_FUNCTIONS = {
    "gaussian_noise": _gaussian_noise, "shot_noise": _shot_noise, "impulse_noise": _impulse_noise,
    "speckle_noise": _speckle_noise, "defocus_blur": _defocus_blur, "gaussian_blur": _gaussian_blur,
    "brightness": _brightness, "contrast": _contrast, "pixelate": _pixelate, "jpeg_compression": _jpeg,
}


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def check(kind: str, severity) -> None:
    """A ``UserError`` of one line for an unknown kind or a severity that is not 1–5."""

    if kind not in _PARAMS:
        raise UserError(f"unknown corruption {kind!r}{close_match_hint(str(kind), list(CORRUPTIONS))} "
                        f"(valid: {', '.join(CORRUPTIONS)})")
    if isinstance(severity, bool) or severity not in SEVERITIES:
        raise UserError(f"corruption severity must be one of {', '.join(map(str, SEVERITIES))}, got {severity!r}")


def generator(dataset: str, kind: str, severity: int) -> torch.Generator:
    """The CPU generator of one set: seeded by the SHA-256 of ``"<dataset>/<kind>/<severity>"``."""
    digest = hashlib.sha256(f"{dataset}/{kind}/{severity}".encode()).hexdigest()
    return torch.Generator().manual_seed(int(digest[:15], 16))


def corrupt(images: torch.Tensor, kind: str, severity: int, g: torch.Generator) -> torch.Tensor:
    """uint8 N×C×H×W images under ``kind`` at ``severity`` (1–5), as uint8 N×C×H×W; the noise from ``g``."""
    check(kind, severity)
    x = images.float() / 255.0
    return _to_uint8(_FUNCTIONS[kind](x, _PARAMS[kind][severity - 1], g))


def corrupted_set(images: torch.Tensor, labels: torch.Tensor, dataset: str, kind: str, severity: int,
                  subset: int | None = SUBSET) -> tuple[torch.Tensor, torch.Tensor]:
    """``subset`` images of a clean split (a fixed draw per set; None or ≥ N: all) under one corruption."""
    g = generator(dataset, kind, severity)
    n = len(labels)
    index = torch.arange(n) if subset is None or subset >= n else torch.randperm(n, generator=g)[:subset].sort().values
    return corrupt(images[index], kind, severity, g), labels[index]


_CACHE: dict[tuple, tuple[torch.Tensor, torch.Tensor, list[tuple[str, int, int]]]] = {}


def corrupted_sets(images: torch.Tensor, labels: torch.Tensor, dataset: str, kinds, severities, subset,
                   key=None) -> tuple[torch.Tensor, torch.Tensor, list[tuple[str, int, int]]]:
    """Every (kind, severity) set, concatenated: (uint8 images, labels, [(kind, severity, count)] in order).
    Cached in the process under ``key`` (None: not cached)."""
    cache_key = None if key is None else (key, tuple(kinds), tuple(severities), subset)
    if cache_key in _CACHE:
        return _CACHE[cache_key]
    xs, ys, spans = [], [], []
    for kind in kinds:
        for severity in severities:
            x, y = corrupted_set(images, labels, dataset, kind, severity, subset)
            xs.append(x)
            ys.append(y)
            spans.append((kind, severity, len(y)))
    out = (torch.cat(xs), torch.cat(ys), spans)
    if cache_key is not None:
        _CACHE.clear()
        _CACHE[cache_key] = out
    return out
