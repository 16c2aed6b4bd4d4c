"""The ``torch`` loader: a torchvision ``Dataset`` + ``DataLoader``, the reference the fast loaders are
measured against.

Array datasets: ``RandomCrop(padding)`` + ``RandomHorizontalFlip`` + ``ToTensor`` + ``Normalize`` on PIL
images; image-folder datasets: ``ImageFolder`` with ``RandomResizedCrop`` + flip for training, else resize
to 256/224 of the size + ``CenterCrop``. Determinism: the sampler and the workers are seeded from
``(seed, epoch)`` (PyTorch's recipe), so an epoch is deterministic for a given ``num_workers``; with
``num_workers=0`` each sample's transform runs under a forked RNG seeded from ``(seed, epoch, index)``.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.data.loaders import Loader, register_loader
from bench.data.plan import augment_padding, epoch_seed


class TorchArrayDataset(torch.utils.data.Dataset):
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


class Transform:
    """torchvision ops composed, and whether they draw random numbers."""

    def __init__(self, ops, random: bool):
        import torchvision.transforms as T

        self.compose = T.Compose(ops)
        self.random = random

    def __call__(self, img):
        return self.compose(img)


def seed_worker(worker_id: int) -> None:
    """DataLoader workers: torch is already seeded with base_seed + id; seed numpy/random from it."""
    import random

    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


@register_loader("torch")
class TorchLoader(Loader):
    """torchvision Dataset + DataLoader: the reference the fast loaders are measured against."""

    def __init__(self, dataset, split, *, batch_size, train, device, seed, data_root=None, subset=None,
                 num_workers=2, channels_last=False, pad=None, augment=True):
        import torchvision
        import torchvision.transforms as T

        info = dataset.info
        norm = [T.ToTensor(), T.Normalize(info.mean, info.std)]
        if not dataset.in_memory:
            root = dataset.folder(split, data_root)
            ops = ([T.RandomResizedCrop(info.img_size), T.RandomHorizontalFlip()] if train and augment
                   else [T.Resize(int(round(info.img_size * 256 / 224))), T.CenterCrop(info.img_size)])
            ds = torchvision.datasets.ImageFolder(str(root), transform=Transform(ops + norm, train))
            if subset is not None:
                ds = torch.utils.data.Subset(ds, range(min(int(subset), len(ds))))
            self.torch_dataset = ds
            self._epoch_target = None
            n = len(ds)
        else:
            images, labels = dataset.arrays(split, data_root)
            if subset is not None:
                images, labels = images[: int(subset)], labels[: int(subset)]
            p = augment_padding(info.img_size, pad, augment)
            ops = ([T.RandomCrop(info.img_size, padding=p), T.RandomHorizontalFlip()] if train and augment and p
                   else [T.RandomHorizontalFlip()] if train and augment else [])
            self.torch_dataset = TorchArrayDataset(images, labels, Transform(ops + norm, bool(ops)), seed)
            self._epoch_target = self.torch_dataset
            n = len(labels)
        super().__init__(dataset, split, batch_size=batch_size, train=train, device=device, seed=seed,
                         num_samples=n)
        self.num_workers = int(num_workers)
        self.channels_last = bool(channels_last)

    def __iter__(self):
        epoch = self.next_epoch()
        if self._epoch_target is not None:
            self._epoch_target.epoch = epoch
        g_order = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, "torch-order"))
        g_workers = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, "torch-workers"))
        sampler = (torch.utils.data.RandomSampler(self.torch_dataset, generator=g_order) if self.train
                   else torch.utils.data.SequentialSampler(self.torch_dataset))
        # a fresh DataLoader per epoch (no persistent workers): worker seeds come from (seed, epoch)
        dl = torch.utils.data.DataLoader(
            self.torch_dataset, batch_size=self.batch_size, sampler=sampler, drop_last=self.drop_last,
            num_workers=self.num_workers, generator=g_workers, worker_init_fn=seed_worker,
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
