"""FFCV ``.beton`` files: whether FFCV is usable, writing a file from indexed samples, reading one back.

FFCV is optional: this module imports it lazily, and :func:`require_ffcv` turns its absence into a
``UserError`` with the install line, so the rest of ``bench`` imports and runs without it.

Storage. Images go into an ``RGBImageField`` (``raw`` or ``jpg``, with a maximum resolution and a JPEG
quality), labels into an ``IntField``. FFCV only stores RGB, so a 1-channel dataset is stored with its gray
channel replicated 3 times (lossless in ``raw`` mode; the loader keeps channel 0). A source whose images
fail to decode logs them to its ``errors_path``; the file is then refused.
"""

from __future__ import annotations

import os
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np

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
