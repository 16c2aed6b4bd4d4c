"""The cache of ``methods.kernels``' compiled library: where it lives, how it is built, and how a cached
library is verified before it is loaded.

The library is ``<cache>/proxbench-kernels-<key>-<sha256>.so``: ``key`` hashes the source, the compiler, its
flags and the CPU's instruction set; ``sha256`` (the first ``DIGEST_CHARS`` hex digits) is the checksum of
the file's own bytes, taken before it is moved into place atomically. ``build`` returns a cached library
only when its bytes hash to that checksum; any other file of the key (truncated, foreign, from an older
version without a checksum) is deleted, its name noted in ``REJECTED`` for the caller's one warning, and the
library is built again.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

CACHE_ENV = "PROXBENCH_KERNEL_CACHE"
SOURCE = Path(__file__).with_name("kernels.c")
FLAGS = ("-O3", "-march=native", "-fopenmp", "-ffp-contract=off", "-fPIC", "-shared")
# tried in this order: a compiler without -march=native (some clang targets) or without OpenMP (Apple's clang)
# still builds the loops, the latter single-threaded
FALLBACK_DROPS = ((), ("-march=native",), ("-march=native", "-fopenmp"))
REJECTED: list[str] = []  # cached files deleted by ``build`` since the caller last took this list


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "proxbench"


def cpu_features() -> str:
    """The CPU's feature flags line (/proc/cpuinfo), part of every build's cache key."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return platform.processor()


def build(directory: Path | None = None) -> Path:
    """Compile ``kernels.c`` into ``directory`` (default ``cache_dir()``) unless it is there already; the path.
    ``FLAGS`` first, then without the flags ``FALLBACK_DROPS`` names; the first compiler error if none builds."""
    compiler = shutil.which(os.environ.get("CC") or "cc")
    if compiler is None:
        raise RuntimeError(f"no C compiler ({os.environ.get('CC') or 'cc'}) on PATH")
    source = SOURCE.read_bytes()
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    directory = Path(directory or cache_dir())
    candidates = []
    for drop in FALLBACK_DROPS:
        flags = [f for f in FLAGS if f not in drop]
        key = hashlib.sha256(b"\0".join([source, version.encode(), " ".join(flags).encode(),
                                         cpu_features().encode()])).hexdigest()[:16]
        candidates.append((flags, directory / f"proxbench-kernels-{key}.so"))
    for _, target in candidates:
        found = _verified(target)
        if found is not None:  # built before, possibly with a fallback: not compiled (nor failed) again
            return found
    errors = []
    for flags, target in candidates:
        directory.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=directory, suffix=".so.partial")
        os.close(fd)
        try:
            done = subprocess.run([compiler, *flags, str(SOURCE), "-o", partial, "-lm"], capture_output=True,
                                  text=True)
            if done.returncode == 0:
                final = target.with_name(f"{target.stem}-{_digest(Path(partial))}.so")
                os.replace(partial, final)  # atomic: processes building at once each write their own file
                return final
            errors.append(f"{Path(compiler).name} failed: {' '.join(done.stderr.split())[:300]}")
        finally:
            if os.path.exists(partial):
                os.unlink(partial)
    raise RuntimeError(errors[0])


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:DIGEST_CHARS]


DIGEST_CHARS = 32


def _verified(target: Path) -> Path | None:
    """The cached library of ``target``'s key whose bytes hash to the checksum in its name, or None; any
    other file of that key (truncated, foreign, unnamed by checksum) is deleted and noted in ``REJECTED``."""
    for path in sorted(target.parent.glob(f"{target.stem}*.so")):
        checksum = path.stem[len(target.stem) + 1:]
        try:
            if len(checksum) == DIGEST_CHARS and _digest(path) == checksum:
                return path
            path.unlink()
        except OSError:
            continue
        REJECTED.append(path.name)
    return None
