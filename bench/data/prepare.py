"""``python -m bench data prepare DATASET``: FFCV ``.beton`` files with a manifest.

Writes ``<out>/<split>.beton`` (default ``<out>`` = ``<data-root>/ffcv/<dataset>``; synthetic data with
non-default options gets ``synthetic-<hash>``) and ``<out>/<split>.manifest.json`` beside it: the source
(paths, sizes, sha256), sample count, label histogram, image storage, the options, the ``.beton``'s
size and sha256, the FFCV version.

Idempotent: with the same options and an unchanged source, and a ``.beton`` that matches its manifest,
nothing is done (and it says so). Different options, a changed source, or a ``.beton`` that disagrees
with its manifest (truncated, corrupt, missing) → rebuilt. Never a half-written file: the ``.beton`` is
written to a temp file in the same folder, fsynced and renamed; the manifest last, the same way; a
``.beton`` without a matching manifest is never read. A lock file serialises concurrent preparers (many
SLURM array tasks starting at once). Bad input is refused before anything is written.

Checksums: the ``.beton`` is fully re-hashed on every check up to ``FULL_HASH_LIMIT`` bytes; above that
(ImageNet) size, mtime and the hash of its first and last MiB are compared instead. A source file whose
size and mtime match the manifest is trusted without re-hashing.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.atomic import atomic_write, fsync_dir
from bench.data.beton import ffcv_version, require_ffcv, write_beton
from bench.data.registry import Dataset, get_dataset, get_dataset_class, list_datasets
from bench.registry import unknown_name
from bench.data.sources import resolve_data_root, sha256_file
from bench.errors import UserError

MANIFEST_VERSION = 1
FULL_HASH_LIMIT = 4 << 30  # bytes: larger .beton files are checked by size, mtime and sampled hash
SAMPLE_BYTES = 1 << 20
FORMATS = ("raw", "jpg")


@dataclass
class PrepareResult:
    dataset: str
    split: str
    path: Path
    manifest_path: Path
    status: str  # "up to date" | "built" | "rebuilt"
    reason: str
    num_samples: int

    def line(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"{self.dataset}/{self.split}: {self.status}{why}: {self.path} [{self.num_samples} samples]"


# --------------------------------------------------------------------------------------------
# Options and paths
# --------------------------------------------------------------------------------------------

def effective_options(ds: Dataset, fmt: str | None = None, max_res: int | None = None,
                      quality: int | None = None) -> dict[str, Any]:
    """Validated write options with the dataset's defaults filled in (what the manifest records)."""
    folder = not ds.fixed_size
    if fmt is None:
        fmt = ds.beton_format
    if fmt not in FORMATS:
        raise unknown_name("format", fmt, FORMATS)
    if max_res is not None:
        if isinstance(max_res, bool) or int(max_res) <= 0:
            raise UserError(f"--max-res must be a positive number of pixels, got {max_res}")
        max_res = int(max_res)
        if not folder and max_res < ds.img_size:
            resized = ", ".join(n for n in list_datasets() if not get_dataset_class(n).fixed_size)
            raise UserError(f"--max-res {max_res} is smaller than {ds.name}'s {ds.img_size} px images; "
                            f"fixed-size datasets are stored at full size (--max-res applies to {resized})")
    if folder and max_res is None:
        max_res = ds.beton_max_res
    if not folder:
        max_res = None  # no effect on fixed-size images: recorded as full size
    if quality is not None:
        if isinstance(quality, bool) or not 1 <= int(quality) <= 100:
            raise UserError(f"--quality must be in 1..100, got {quality}")
        if fmt != "jpg":
            raise UserError("--quality applies only to --format jpg")
        quality = int(quality)
    if fmt == "jpg" and quality is None:
        quality = 90
    return {"format": fmt, "max_res": max_res, "quality": quality}


def default_out_dir(dataset: str, data_root=None, options: dict | None = None) -> Path:
    return resolve_data_root(data_root) / "ffcv" / get_dataset(dataset, options).beton_dirname()


def beton_path(out: Path, split: str) -> Path:
    return Path(out) / f"{split}.beton"


def manifest_path(out: Path, split: str) -> Path:
    return Path(out) / f"{split}.manifest.json"


def _parse_splits(ds: Dataset, splits) -> list[str]:
    if isinstance(splits, str):
        splits = [s.strip() for s in splits.split(",") if s.strip()]
    out = []
    for s in splits or []:
        s = ds.check_split(s)
        if s not in out:
            out.append(s)
    if not out:
        raise UserError("--split names no split (valid: train, test)")
    return out


def _check_out_dir(out: Path) -> None:
    """Create ``out`` and prove it writable (a temp file), or raise a UserError."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"cannot write to output folder {out}: {exc.strerror or exc}") from None


# --------------------------------------------------------------------------------------------
# Hashes and fingerprints
# --------------------------------------------------------------------------------------------

def sampled_sha256(path: Path) -> str:
    """sha256 of the size, the first and the last ``SAMPLE_BYTES`` of a file."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        h.update(f.read(SAMPLE_BYTES))
        f.seek(max(0, size - SAMPLE_BYTES))
        h.update(f.read(SAMPLE_BYTES))
    return h.hexdigest()


def read_manifest(path: Path) -> dict | None:
    try:
        m = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(m, dict) or m.get("manifest_version") != MANIFEST_VERSION:
        return None
    return m


def check_beton(beton: Path, manifest: dict) -> str | None:
    """Why ``beton`` disagrees with ``manifest`` (None: it matches)."""
    rec = manifest.get("beton") or {}
    try:
        st = beton.stat()
    except FileNotFoundError:
        return "the .beton is missing"
    if st.st_size != rec.get("size"):
        return f"the .beton has {st.st_size} bytes, its manifest says {rec.get('size')} (truncated?)"
    if st.st_size <= FULL_HASH_LIMIT:
        if sha256_file(beton) != rec.get("sha256"):
            return "the .beton's sha256 differs from its manifest (corrupt?)"
    elif st.st_mtime_ns != rec.get("mtime_ns") or sampled_sha256(beton) != rec.get("sampled_sha256"):
        return "the .beton was modified after its manifest was written"
    return None


# --------------------------------------------------------------------------------------------
# Locking
# --------------------------------------------------------------------------------------------

@contextlib.contextmanager
def _locked(out: Path, split: str):
    with open(out / f".{split}.lock", "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# Prepare
# --------------------------------------------------------------------------------------------

def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def prepare_split(dataset: str, split: str, *, data_root=None, out=None, options: dict | None = None,
                  fmt: str | None = None, max_res: int | None = None, quality: int | None = None,
                  force: bool = False, accept_existing: bool = False, log=_log) -> PrepareResult:
    """Make ``<out>/<split>.beton`` match the source and the options (see the module doc).

    ``accept_existing``: a valid, current ``.beton`` is used whatever options it was written with
    (what a loader wants: it must not undo an explicit ``data prepare --format jpg``)."""
    ds = get_dataset(dataset, options)
    info = ds.info
    split = ds.check_split(split)
    opts = effective_options(ds, fmt, max_res, quality)
    out = Path(out) if out else default_out_dir(dataset, data_root, options)
    beton, mpath = beton_path(out, split), manifest_path(out, split)
    old = read_manifest(mpath)
    # the source must exist before anything is written
    fingerprint = ds.beton_fingerprint(split, data_root, (old or {}).get("source"))
    _check_out_dir(out)
    with _locked(out, split):
        old = read_manifest(mpath)  # another process may have built it while we waited
        reason = _stale_reason(old, beton, dataset, split, info, opts, fingerprint, force, accept_existing)
        if reason is None:
            return PrepareResult(dataset, split, beton, mpath, "up to date", "", int(old["num_samples"]))
        status = "built" if old is None and not beton.exists() else "rebuilt"
        log(f"{dataset}/{split}: writing {beton} ({reason})")
        manifest = _build(beton, mpath, ds, split, opts, fingerprint, data_root)
        return PrepareResult(dataset, split, beton, mpath, status, reason, manifest["num_samples"])


def _stale_reason(old, beton, dataset, split, info, opts, fingerprint, force, accept_existing) -> str | None:
    if force:
        return "forced"
    if old is None:
        return "no manifest" if not beton.exists() else "no valid manifest beside the existing .beton"
    if old.get("dataset") != dataset or old.get("split") != split or \
            old.get("dataset_options", {}) != info.options:
        return "the manifest describes another dataset"
    if not accept_existing and old.get("options") != opts:
        changed = [f"{k} {old.get('options', {}).get(k)!r} -> {v!r}" for k, v in opts.items()
                   if old.get("options", {}).get(k) != v]
        return "options changed: " + ", ".join(changed)
    if old.get("source", {}).get("sha256") != fingerprint["sha256"]:
        return "the source changed"
    return check_beton(beton, old)


def _build(beton: Path, mpath: Path, ds: Dataset, split, opts, fingerprint, data_root) -> dict:
    require_ffcv()
    dataset, info = ds.name, ds.info
    out = beton.parent
    fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{split}.beton.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp)
    errors = tmp.with_suffix(".errors")
    t0 = time.time()
    try:
        source, labels, image_shape = ds.beton_samples(split, data_root, str(errors))
        if len(labels) == 0:
            raise UserError(f"{dataset}/{split} has no samples")
        write_beton(tmp, source, fmt=opts["format"], max_res=opts["max_res"], quality=opts["quality"])
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        size = tmp.stat().st_size
        digest = sha256_file(tmp)
        hist = np.bincount(labels, minlength=info.num_classes).tolist()
        # the old manifest goes first: a .beton never sits beside a manifest that is not its own
        mpath.unlink(missing_ok=True)
        os.replace(tmp, beton)
        fsync_dir(out)
        st = beton.stat()
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "dataset": dataset,
            "split": split,
            "dataset_options": info.options,
            "options": opts,
            "num_samples": int(len(labels)),
            "num_classes": info.num_classes,
            "label_histogram": hist,
            "storage": {
                "fields": {"image": "RGBImageField", "label": "IntField"},
                "image_shape": image_shape,
                "source_channels": info.in_chans,
                "note": ("grayscale replicated to 3 channels; the loader keeps channel 0"
                         if info.in_chans == 1 else "RGB"),
            },
            "source": fingerprint,
            "beton": {"file": beton.name, "size": size, "sha256": digest, "mtime_ns": st.st_mtime_ns,
                      "sampled_sha256": sampled_sha256(beton)},
            "ffcv_version": ffcv_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "write_seconds": round(time.time() - t0, 3),
        }
        text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
        atomic_write(mpath, lambda fh: fh.write(text.encode()))
        fsync_dir(out)
        return manifest
    finally:
        tmp.unlink(missing_ok=True)
        errors.unlink(missing_ok=True)


def ensure_beton(dataset: str, split: str, *, data_root=None, options: dict | None = None,
                 out=None, log=_log) -> tuple[Path, dict]:
    """The ``.beton`` of a split, prepared with default options if missing or stale (for loaders)."""
    res = prepare_split(dataset, split, data_root=data_root, out=out, options=options,
                        accept_existing=True, log=log)
    manifest = read_manifest(res.manifest_path)
    if manifest is None:  # pragma: no cover - only if someone deletes it between the two lines
        raise UserError(f"{res.manifest_path} vanished while preparing {dataset}/{split}")
    return res.path, manifest


def prepare_dataset(dataset: str, splits="train,test", *, fmt=None, max_res=None, quality=None, data_root=None,
                    out=None, options: dict | None = None, force: bool = False, log=_log) -> list[PrepareResult]:
    """Prepare several splits; every input is validated before the first one is written."""
    ds = get_dataset(dataset, options)
    split_list = _parse_splits(ds, splits)
    effective_options(ds, fmt, max_res, quality)
    require_ffcv()
    out_dir = Path(out) if out else default_out_dir(dataset, data_root, options)
    for s in split_list:  # every source before any write
        ds.source_files(s, data_root)
    _check_out_dir(out_dir)
    return [prepare_split(dataset, s, data_root=data_root, out=out_dir, options=options, fmt=fmt,
                          max_res=max_res, quality=quality, force=force, log=log) for s in split_list]


def cli_prepare(args) -> int:
    """``python -m bench data prepare DATASET [--split ...] [--format ...] [--max-res N] [--quality Q]``."""
    results = prepare_dataset(args.dataset, args.split, fmt=args.format, max_res=args.max_res,
                              quality=args.quality, data_root=args.data_root, out=args.out)
    for r in results:
        print(r.line())
    return 0
