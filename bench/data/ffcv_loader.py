"""The ``ffcv`` loader: ``.beton`` files (prepared on first use, ``bench.data.prepare``) read by FFCV.

Pipelines: ``SimpleRGBImageDecoder`` (image-folder datasets: ``RandomResizedCropRGBImageDecoder`` for
training, ``CenterCropRGBImageDecoder`` for evaluation) → ``ToTensor`` → ``ToDevice`` (CUDA only,
``non_blocking``) → ``ToTorchImage`` → :class:`CropFlipNormalize`; labels: ``IntDecoder`` → ``ToTensor``
→ ``Squeeze`` (→ ``ToDevice``). A 1-channel dataset is stored as RGB; the loader keeps channel 0.

Determinism. FFCV's own ``RandomTranslate`` / ``RandomHorizontalFlip`` draw from numba's per-thread
RNG inside parallel loops and its ``OrderOption.RANDOM`` seeds numpy with ``seed + epoch``; the former is
not reproducible with several workers (threads). So this loader replaces both by the same per-(seed,
epoch) plan the ``memory`` loader uses (:func:`bench.data.plan.epoch_plan`): a custom traversal order serves
the plan's permutation, and :class:`CropFlipNormalize` (a torch stage of the pipeline that receives the
batch's sample indices) applies the plan's per-sample crop offset and flip. Hence, for any number of
workers, epoch ``e`` is a pure function of ``(seed, e)``, and the ``ffcv`` and ``memory`` loaders give
identical batches, augmentation included. Not deterministic: the image folders' random resized crop
(FFCV's decoder, numba RNG). Note: FFCV sets ``torch.set_num_threads(num_workers)`` when it iterates.
"""

from __future__ import annotations

import atexit
import weakref
from dataclasses import replace

import numpy as np
import torch

from bench.data.beton import require_ffcv
from bench.data.loaders import Loader, register_loader
from bench.data.plan import EpochPlan, Normalizer, augment_padding, crop_flip, epoch_plan
from bench.data.prepare import ensure_beton


def crop_flip_normalize_class():
    """The pipeline stage, defined lazily because it subclasses FFCV's ``Operation``."""
    from ffcv.pipeline.operation import Operation

    class CropFlipNormalize(Operation):
        """Torch stage: keep ``in_chans`` channels, apply the loader's current plan's crop (zero padding
        ``pad``) and flip to each sample by its index, normalise to float32 (like ``ToTensor`` +
        ``Normalize``), optionally channels-last. Receives the batch's sample indices from FFCV."""

        def __init__(self, owner: "FFCVLoader"):
            super().__init__()
            self.owner = owner

        def generate_code(self):
            owner = self.owner
            x_device_is_cpu = owner.device.type == "cpu"

            def crop_flip_normalize(images, _dst, batch_indices):
                if x_device_is_cpu and torch.get_num_threads() != 1:
                    torch.set_num_threads(1)  # FFCV's thread only (per-thread setting): see intra_op_threads
                x = images[:, : owner.info.in_chans]
                plan = owner.plan
                if owner.train and plan is not None and (plan.flip is not None or plan.dy is not None):
                    ids = torch.from_numpy(np.asarray(batch_indices, dtype=np.int64)).to(x.device)
                    dy = None if plan.dy is None else plan.dy[ids]
                    dx = None if plan.dx is None else plan.dx[ids]
                    flip = None if plan.flip is None else plan.flip[ids]
                    p = owner.pad if dy is not None else 0
                    src = torch.nn.functional.pad(x, (p, p, p, p)) if p else x
                    x = crop_flip(src, None, tuple(x.shape[2:]), dy, dx, flip)
                return owner.normalize(x, owner.channels_last)

            crop_flip_normalize.with_indices = True
            return crop_flip_normalize

        def declare_state_and_memory(self, previous_state):
            _, h, w = previous_state.shape
            return replace(previous_state, jit_mode=False, shape=(self.owner.info.in_chans, h, w),
                           dtype=torch.float32), None

    return CropFlipNormalize


def plan_order_class():
    """The traversal order, defined lazily because it subclasses FFCV's ``TraversalOrder``."""
    from ffcv.traversal_order.base import TraversalOrder

    class PlanOrder(TraversalOrder):
        """Serves the owner's current plan's order (the ``memory`` loader's permutation)."""

        def __init__(self, loader, owner: "FFCVLoader"):
            super().__init__(loader)
            self.owner = owner

        def sample_order(self, epoch: int):
            plan = self.owner.plan
            if plan is None or not self.owner.train:
                return self.indices
            return plan.order.cpu().numpy().astype(np.uint64)

    return PlanOrder


@register_loader("ffcv")
class FFCVLoader(Loader):
    """``.beton`` files read by FFCV's ``Loader`` (see the module doc)."""

    compiles_first_epoch = True  # numba compiles the pipeline during the first epoch

    @classmethod
    def check_available(cls) -> None:
        require_ffcv()

    def __init__(self, dataset, split, *, batch_size, train, device, seed, data_root=None, subset=None,
                 num_workers=2, channels_last=False, pad=None, augment=True):
        require_ffcv()
        from ffcv.fields.basics import IntDecoder
        from ffcv.fields.rgb_image import (CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder,
                                           SimpleRGBImageDecoder)
        from ffcv.loader import Loader as FLoader
        from ffcv.loader import OrderOption
        from ffcv.transforms import Squeeze, ToDevice, ToTensor, ToTorchImage

        self.beton, self.manifest = ensure_beton(dataset.name, split, data_root=data_root,
                                                 options=dataset.options or None)
        total = int(self.manifest["num_samples"])
        n = total if subset is None else min(int(subset), total)
        super().__init__(dataset, split, batch_size=batch_size, train=train, device=device, seed=seed,
                         num_samples=n)
        info = self.info
        self.cropped = not dataset.fixed_size  # the decoder crops variable-size images to img_size
        self.flip = bool(augment)
        self.pad = 0 if self.cropped else augment_padding(info.img_size, pad, augment)
        self.channels_last = bool(channels_last)
        self.normalize = Normalizer(info.mean, info.std, self.device)
        self.plan: EpochPlan | None = None
        cuda = self.device.type == "cuda"
        if self.cropped:
            size = (info.img_size, info.img_size)
            decoder = (RandomResizedCropRGBImageDecoder(size) if train and augment
                       else CenterCropRGBImageDecoder(size, ratio=224 / 256))
        else:
            decoder = SimpleRGBImageDecoder()
        image = [decoder, ToTensor()]
        label = [IntDecoder(), ToTensor(), Squeeze(1)]
        if cuda:
            image.append(ToDevice(self.device, non_blocking=True))
            label.append(ToDevice(self.device, non_blocking=True))
        image += [ToTorchImage(channels_last=True), crop_flip_normalize_class()(self)]
        self.num_workers = max(1, int(num_workers))
        self.ffcv_loader = FLoader(
            str(self.beton), batch_size=self.batch_size, num_workers=self.num_workers,
            order=OrderOption.SEQUENTIAL, indices=np.arange(n, dtype=np.uint64),
            pipelines={"image": image, "label": label}, drop_last=self.drop_last, os_cache=True,
            seed=self.seed % (2**31 - 1))
        self.ffcv_loader.traversal_order = plan_order_class()(self.ffcv_loader, self)

    def __iter__(self):
        epoch = self.next_epoch()
        return self._batches(epoch)

    def _batches(self, epoch):
        plan = epoch_plan(self.num_samples, self.seed, epoch, train=self.train, pad=self.pad, flip=self.flip)
        self.plan = plan.to(self.device)
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()
        self.ffcv_loader.next_epoch = epoch
        threads = torch.get_num_threads()
        iterator = iter(self.ffcv_loader)
        torch.set_num_threads(threads)  # FFCV's __iter__ sets the caller's torch threads to num_workers
        _LIVE.add(iterator)
        try:
            cuda = self.device.type == "cuda"
            for x, y in iterator:
                if cuda:  # made on FFCV's side stream, used on ours: keep the allocator off it
                    x.record_stream(torch.cuda.current_stream(self.device))
                # y lives in FFCV's reused buffers: copy it (x is freshly made by CropFlipNormalize)
                yield x, y.to(torch.int64, copy=True)
        finally:
            stop_iterator(iterator)


# FFCV's epoch iterator is a daemon thread that runs numba code. Left running when an epoch is abandoned
# (a `break`, an exception), it makes the interpreter abort at exit ("terminate called without an active
# exception", status 134). So every abandoned epoch is stopped, and whatever is still alive at exit.
_LIVE: "weakref.WeakSet" = weakref.WeakSet()


def stop_iterator(iterator, timeout: float = 60.0) -> None:
    """Stop an FFCV epoch thread: it checks its terminate flag when its output queue is full, so set
    the flag, do not drain, and wait for it (about half a second)."""
    if iterator.is_alive():
        iterator.terminate_event.set()
        iterator.join(timeout)
    iterator.close()
    _LIVE.discard(iterator)


@atexit.register
def stop_all_iterators() -> None:
    """Stop every FFCV epoch thread still alive (run at exit)."""
    for iterator in list(_LIVE):
        stop_iterator(iterator, timeout=10.0)
