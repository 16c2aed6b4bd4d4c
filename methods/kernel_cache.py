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


def compiler() -> tuple[str, str] | None:
    """(path, ``--version`` text) of the system C compiler (``$CC``, else ``cc``), or None when it is not on PATH."""
    found = shutil.which(os.environ.get("CC") or "cc")
    if found is None:
        return None
    return found, subprocess.run([found, "--version"], capture_output=True, text=True).stdout


def cache_key(sources: list[Path], version: str, flags) -> str:
    """16 hex digits naming a build: the sources' bytes, the compiler's version, the flags and this CPU."""
    parts = [src.read_bytes() for src in sources]
    parts += [version.encode(), " ".join(flags).encode(), cpu_features().encode()]
    return hashlib.sha256(b"\0".join(parts)).hexdigest()[:16]


def compile_library(cc: str, flags, sources: list[Path], directory: Path, libs=()) -> tuple[Path | None, str]:
    """Compile ``sources`` into a temporary file in ``directory`` (made if missing): (its path, "") for the
    caller to move into place, or (None, the compiler's first error line, cut to 300 characters)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=directory, suffix=".so.partial")
    os.close(fd)
    done = subprocess.run([cc, *flags, *map(str, sources), "-o", partial, *libs], capture_output=True, text=True)
    if done.returncode == 0:
        return Path(partial), ""
    os.unlink(partial)
    return None, f"{Path(cc).name} failed: {' '.join(done.stderr.split())[:300]}"


def build(directory: Path | None = None) -> Path:
    """Compile ``kernels.c`` into ``directory`` (default ``cache_dir()``) unless it is there already; the path.
    ``FLAGS`` first, then without the flags ``FALLBACK_DROPS`` names; the first compiler error if none builds."""
    found = compiler()
    if found is None:
        raise RuntimeError(f"no C compiler ({os.environ.get('CC') or 'cc'}) on PATH")
    cc, version = found
    directory = Path(directory or cache_dir())
    candidates = []
    for drop in FALLBACK_DROPS:
        flags = [f for f in FLAGS if f not in drop]
        candidates.append((flags, directory / f"proxbench-kernels-{cache_key([SOURCE], version, flags)}.so"))
    for _, target in candidates:
        found = _verified(target)
        if found is not None:  # built before, possibly with a fallback: not compiled (nor failed) again
            return found
    errors = []
    for flags, target in candidates:
        partial, error = compile_library(cc, flags, [SOURCE], directory, libs=("-lm",))
        if partial is None:
            errors.append(error)
            continue
        final = target.with_name(f"{target.stem}-{_digest(partial)}.so")
        os.replace(partial, final)  # atomic: processes building at once each write their own file
        return final
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
