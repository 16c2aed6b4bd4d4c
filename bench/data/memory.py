"""The ``memory`` loader: a whole array split as one uint8 tensor on the device.

Random crop (zero padding) + horizontal flip as one batched gather (``bench.data.plan.crop_flip``) following
the epoch's plan, normalisation fused; tens of times faster than a DataLoader on a CPU. Only for datasets
held in memory (``Dataset.in_memory``).
"""

from __future__ import annotations

import torch

from bench.data.loaders import Loader, register_loader
from bench.data.plan import EpochPlan, Normalizer, augment_padding, crop_flip, epoch_plan, intra_op_threads
from bench.errors import UserError


@register_loader("memory")
class MemoryLoader(Loader):
    """The whole split as one uint8 tensor on the device; crop+flip+normalise as batched tensor ops."""

    def __init__(self, dataset, split, *, batch_size, train, device, seed, data_root=None, subset=None,
                 num_workers=0, channels_last=False, pad=None, augment=True):
        if not dataset.in_memory:
            raise UserError(f"loader 'memory' cannot hold '{dataset.name}' (too large): "
                            "use loader 'ffcv' or 'torch'")
        images, labels = dataset.arrays(split, data_root)
        if subset is not None:
            images, labels = images[: int(subset)], labels[: int(subset)]
        super().__init__(dataset, split, batch_size=batch_size, train=train, device=device, seed=seed,
                         num_samples=len(labels))
        info = self.info
        self.size = tuple(images.shape[2:])
        self.flip = bool(augment)
        self.pad = augment_padding(info.img_size, pad, augment)
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
        epoch = self.next_epoch()
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
