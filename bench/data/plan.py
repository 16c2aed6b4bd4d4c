"""Determinism and augmentation math shared by the loaders: one plan per (seed, epoch).

``epoch_seed(seed, epoch, stream)`` is a 63-bit blake2b hash, never the global RNG. ``epoch_plan`` draws an
epoch's sample order and every sample's crop offset and flip from a ``torch.Generator`` seeded with it,
indexed by sample, so every loader that follows the plan serves identical batches. ``crop_flip`` applies a
random crop of a zero-padded image (offset in [0, 2·pad] per axis) and a horizontal flip as one batched
gather; ``Normalizer`` computes ``(x / 255 - mean) / std`` with the float32 operations of torchvision's
``ToTensor`` + ``Normalize``. Padding: 4 px for images of 32 px and more, 2 px from 16 px, else 1 px.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass

import torch


def epoch_seed(seed: int, epoch: int, stream: str = "") -> int:
    """A 63-bit seed that is a pure function of (seed, epoch, stream) — never of the global RNG."""
    digest = hashlib.blake2b(f"proxbench:{int(seed)}:{int(epoch)}:{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def default_padding(img_size: int) -> int:
    """Random-crop padding: 4 px for CIFAR-sized images (>= 32 px), 2 px for 28x28, 1 px below 16."""
    if img_size >= 32:
        return 4
    return 2 if img_size >= 16 else 1


def augment_padding(img_size: int, pad: int | None, augment: bool) -> int:
    """The loaders' random-crop padding: 0 without augmentation, else ``pad`` (default :func:`default_padding`)."""
    if not augment:
        return 0
    return default_padding(img_size) if pad is None else int(pad)


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
