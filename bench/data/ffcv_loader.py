"""FFCV: writing ``.beton`` files and reading them with FFCV's ``Loader``.

FFCV is optional: this module imports it lazily, and :func:`require_ffcv` turns its absence into a
``UserError`` with the install line, so the rest of ``bench`` imports and runs without it.

Storage. Images go into an ``RGBImageField`` (``raw`` by default for the small array datasets, ``jpg``
for ImageNet), labels into an ``IntField``. FFCV only stores RGB, so 1-channel Fashion-MNIST is stored
with its gray channel replicated 3 times (lossless in ``raw`` mode) and the loader keeps channel 0 —
the loader yields exactly the source's 1×28×28 pixels.

Reading. Pipelines: ``SimpleRGBImageDecoder`` (ImageNet: ``RandomResizedCropRGBImageDecoder`` for
training, ``CenterCropRGBImageDecoder`` for evaluation) → ``ToTensor`` → ``ToDevice`` (CUDA only,
``non_blocking``) → ``ToTorchImage`` → :class:`CropFlipNormalize`; labels: ``IntDecoder`` → ``ToTensor``
→ ``Squeeze`` (→ ``ToDevice``).

Determinism. FFCV's own ``RandomTranslate`` / ``RandomHorizontalFlip`` draw from numba's per-thread
RNG inside parallel loops and its ``OrderOption.RANDOM`` seeds numpy with ``seed + epoch``; the former is
not reproducible with several workers (threads). So this loader replaces both by the same per-(seed,
epoch) plan the ``memory`` loader uses (:func:`bench.data.datasets.epoch_plan`): a custom traversal order serves
the plan's permutation, and :class:`CropFlipNormalize` (a torch stage of the pipeline that receives the
batch's sample indices) applies the plan's per-sample crop offset and flip. Hence, for any number of
workers, epoch ``e`` is a pure function of ``(seed, e)``, and the ``ffcv`` and ``memory`` loaders give
identical batches, augmentation included. Not deterministic: ImageNet's random resized crop (FFCV's
decoder, numba RNG). Note: FFCV sets ``torch.set_num_threads(num_workers)`` when it iterates.
"""

from __future__ import annotations

import atexit
import functools
import os
import weakref
from dataclasses import replace
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.errors import UserError

FFCV_MISSING = ("loader 'ffcv' needs FFCV: pip install ffcv==1.0.2 "
                "(after apt-get install pkg-config libturbojpeg0-dev libopencv-dev)")


def require_ffcv():
    """Import FFCV (and its compiled parts) or raise the install hint as a ``UserError``."""
    if os.environ.get("PROXBENCH_DISABLE_FFCV"):  # lets one check the message on a machine that has FFCV
        raise UserError(FFCV_MISSING)
    try:
        import ffcv  # noqa: F401
        import ffcv.fields  # noqa: F401
        import ffcv.loader  # noqa: F401
        import ffcv.transforms  # noqa: F401
        import ffcv.writer  # noqa: F401
    except ImportError as exc:
        if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "ffcv":
            raise UserError(FFCV_MISSING) from None
        # installed but broken, e.g. libturbojpeg or OpenCV missing at run time: say which
        raise UserError(f"{FFCV_MISSING} [{type(exc).__name__}: {exc}]") from None
    return ffcv


def ffcv_version() -> str:
    try:
        return importlib_metadata.version("ffcv")
    except importlib_metadata.PackageNotFoundError:  # pragma: no cover
        import ffcv

        return getattr(ffcv, "__version__", "unknown")


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

class _ArraySource:
    """Indexable (HWC uint8 RGB image, label) samples from a uint8 N×C×H×W array (C = 1 or 3)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images = images
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        a = self.images[i]
        if a.shape[0] == 1:
            a = np.repeat(a, 3, axis=0)
        return np.ascontiguousarray(a.transpose(1, 2, 0)), int(self.labels[i])


class _FolderSource:
    """ImageFolder samples as (HWC uint8 RGB, label). A sample that fails to decode does not hang FFCV's
    writer (a dead worker makes it wait forever): the error is logged to ``errors_path`` and a black
    image stands in; the caller then refuses the file."""

    def __init__(self, samples: list[tuple[str, int]], errors_path: str):
        self.samples = samples
        self.errors_path = errors_path

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        from PIL import Image

        path, label = self.samples[i]
        try:
            with Image.open(path) as im:
                return np.asarray(im.convert("RGB")), int(label)
        except Exception as exc:  # noqa: BLE001 - reported by the parent
            with open(self.errors_path, "a") as f:
                f.write(f"{path}: {type(exc).__name__}: {exc}\n")
            return np.zeros((8, 8, 3), np.uint8), int(label)


def write_beton(path: Path, source, *, fmt: str, max_res: int | None, quality: int | None) -> None:
    """Write ``source`` (indexable of (HWC uint8 RGB, int)) to ``path`` with FFCV's DatasetWriter."""
    require_ffcv()
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    image_field = RGBImageField(write_mode=fmt, max_resolution=max_res,
                                jpeg_quality=quality if quality is not None else 90)
    workers = max(1, min(8, os.cpu_count() or 1))
    writer = DatasetWriter(str(path), {"image": image_field, "label": IntField()}, num_workers=workers)
    writer.from_indexed_dataset(source, chunksize=256)
    errors = Path(getattr(source, "errors_path", "") or "/nonexistent")
    if errors.is_file():
        lines = errors.read_text().splitlines()
        errors.unlink()
        raise UserError(f"{len(lines)} source image(s) could not be read, e.g. {lines[0]}")


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

def _crop_flip_normalize_class():
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
            from bench.data.datasets import crop_flip

            owner = self.owner
            x_device_is_cpu = owner.device.type == "cpu"

            def crop_flip_normalize(images, _dst, batch_indices):
                if x_device_is_cpu and torch.get_num_threads() != 1:
                    torch.set_num_threads(1)  # FFCV's thread only (per-thread setting): see intra_op_threads
                x = images[:, : owner.info.in_chans]
                plan = owner._plan
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


def _plan_order_class():
    from ffcv.traversal_order.base import TraversalOrder

    class PlanOrder(TraversalOrder):
        """Serves the owner's current plan's order (the ``memory`` loader's permutation)."""

        def __init__(self, loader, owner: "FFCVLoader"):
            super().__init__(loader)
            self.owner = owner

        def sample_order(self, epoch: int):
            plan = self.owner._plan
            if plan is None or not self.owner.train:
                return self.indices
            return plan.order.cpu().numpy().astype(np.uint64)

    return PlanOrder


def FFCVLoader(info, split, **kw):  # noqa: N802 - a factory that reads like a class
    """``bench.data.datasets.build_loader(..., loader="ffcv")``: see the module doc."""
    require_ffcv()
    return _ffcv_loader_class()(info, split, **kw)


@functools.cache
def _ffcv_loader_class():
    from bench.data.datasets import EpochPlan, Loader, Normalizer, augment_padding, epoch_plan

    class _FFCVLoader(Loader):
        kind = "ffcv"

        def __init__(self, info, split, *, batch_size, train, device, seed, data_root, subset, options,
                     num_workers=2, channels_last=False, pad=None, augment=True):
            from ffcv.fields.basics import IntDecoder
            from ffcv.fields.rgb_image import (CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder,
                                               SimpleRGBImageDecoder)
            from ffcv.loader import Loader as FLoader
            from ffcv.loader import OrderOption
            from ffcv.transforms import Squeeze, ToDevice, ToTensor, ToTorchImage

            from bench.data.prepare import ensure_beton

            self.beton, self.manifest = ensure_beton(info.name, split, data_root=data_root, options=options)
            total = int(self.manifest["num_samples"])
            n = total if subset is None else min(int(subset), total)
            super().__init__(info, split, batch_size=batch_size, train=train, device=device, seed=seed,
                             num_samples=n)
            self.imagenet = info.name == "imagenet"
            self.flip = bool(augment)
            self.pad = 0 if self.imagenet else augment_padding(info, pad, augment)
            self.channels_last = bool(channels_last)
            self.normalize = Normalizer(info.mean, info.std, self.device)
            self._plan: EpochPlan | None = None
            cuda = self.device.type == "cuda"
            if self.imagenet:
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
            image += [ToTorchImage(channels_last=True), _crop_flip_normalize_class()(self)]
            self.num_workers = max(1, int(num_workers))
            self._loader = FLoader(
                str(self.beton), batch_size=self.batch_size, num_workers=self.num_workers,
                order=OrderOption.SEQUENTIAL, indices=np.arange(n, dtype=np.uint64),
                pipelines={"image": image, "label": label}, drop_last=self.drop_last, os_cache=True,
                seed=self.seed % (2**31 - 1))
            self._loader.traversal_order = _plan_order_class()(self._loader, self)

        def __iter__(self):
            epoch = self._next_epoch()
            return self._batches(epoch)

        def _batches(self, epoch):
            plan = epoch_plan(self.num_samples, self.seed, epoch, train=self.train, pad=self.pad, flip=self.flip)
            self._plan = plan.to(self.device)
            if self.device.type == "cuda":
                torch.cuda.current_stream(self.device).synchronize()
            self._loader.next_epoch = epoch
            threads = torch.get_num_threads()
            iterator = iter(self._loader)
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
                _stop_iterator(iterator)

    return _FFCVLoader


# FFCV's epoch iterator is a daemon thread that runs numba code. Left running when an epoch is abandoned
# (a `break`, an exception), it makes the interpreter abort at exit ("terminate called without an active
# exception", status 134). So every abandoned epoch is stopped, and whatever is still alive at exit.
_LIVE: "weakref.WeakSet" = weakref.WeakSet()


def _stop_iterator(iterator, timeout: float = 60.0) -> None:
    """Stop an FFCV epoch thread: it checks its terminate flag when its output queue is full, so set
    the flag, do not drain, and wait for it (about half a second)."""
    if iterator.is_alive():
        iterator.terminate_event.set()
        iterator.join(timeout)
    iterator.close()
    _LIVE.discard(iterator)


@atexit.register
def _stop_all_iterators() -> None:
    for iterator in list(_LIVE):
        _stop_iterator(iterator, timeout=10.0)


def read_beton(path: Path | str, *, num_workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Every (image HWC uint8, label) of a fixed-size ``.beton``, in order (for checks and tests)."""
    require_ffcv()
    from ffcv.fields.basics import IntDecoder
    from ffcv.fields.rgb_image import SimpleRGBImageDecoder
    from ffcv.loader import Loader as FLoader
    from ffcv.loader import OrderOption

    loader = FLoader(str(path), batch_size=512, num_workers=num_workers, order=OrderOption.SEQUENTIAL,
                     drop_last=False, pipelines={"image": [SimpleRGBImageDecoder()], "label": [IntDecoder()]})
    xs, ys = [], []
    for x, y in loader:
        xs.append(np.array(x, copy=True))
        ys.append(np.array(y, copy=True).reshape(-1))
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


def beton_info(path: Path | str) -> dict[str, Any]:
    """Number of samples and field names of a ``.beton`` (reads only its header)."""
    require_ffcv()
    from ffcv.reader import Reader

    r = Reader(str(path))
    return {"num_samples": int(r.num_samples), "fields": list(r.handlers)}
