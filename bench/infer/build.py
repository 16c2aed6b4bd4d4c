"""Build, cache, verify and load ``engine.c`` + ``lines.c`` (the bit-packed inference kernels) with ctypes.

Built at first use with the system C compiler (``$CC``, else ``cc``) into the kernel cache of
``methods.kernels`` (``$PROXBENCH_KERNEL_CACHE``, else ``~/.cache/proxbench``), named by a hash of the sources,
the compiler's version, the flags and the CPU's instruction-set flags; written to a temporary file and renamed
into place (atomic), with a ``.sha256`` sidecar holding the library's checksum, which is checked before every
load (a truncated or foreign file is rebuilt, never loaded). The source is compiled without ``-march``: the
SIMD kernels carry their own ``target`` attributes and are chosen at run time (``ie_cpu_isa``:
``__builtin_cpu_supports``), so one build serves every x86-64 CPU.

``PROXBENCH_INFER_ISA`` = ``auto`` (default: the best this CPU has), ``avx512`` (VPOPCNTDQ), ``avx2`` or
``portable`` (``__builtin_popcountll``) forces a kernel; a CPU without the instructions asked for is an
``EngineError`` (one line), before anything is computed.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import tempfile
from pathlib import Path

from methods.kernel_cache import cache_key, compile_library, compiler
from methods.kernels import cache_dir

from bench.errors import UserError

SOURCE = Path(__file__).with_name("engine.c")
SOURCES = (SOURCE, SOURCE.with_name("lines.c"))  # lines.c: the AVX-512 convolution with positions in the lanes
FLAGS = ("-O3", "-fopenmp", "-ffp-contract=off", "-fPIC", "-shared")
ISA_ENV = "PROXBENCH_INFER_ISA"
ISAS = {"portable": 0, "avx2": 1, "avx512": 2}
ISA_NAMES = {v: k for k, v in ISAS.items()}

_P, _N, _I = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_SIGNATURES = {
    "ie_pack": ((_P, _P, _I, _N, _N, _N, _N, _N, _N, _N, _P, _I, _I), None),
    "ie_conv": ((_P, _N, _N, _N, _N, _P, _P, _P, _N, _N, _N, _N, _N, _N, _N, _N, _P, _P, _P, _I, _I), _I),
    "ie_cpu_isa": ((), _I),
    "ie_lines_size": ((_N, _N, _N, _N, _N, _N), _N),
    "ie_advise_huge": ((_P, _N), None),
    "ie_pack_lines": ((_P, _P, _I, _N, _N, _N, _N, _N, _N, _N, _N, _N, _N, _N, _P, _I), _I),
    "ie_conv_lines": ((_P, _N, _N, _N, _N, _P, _P, _P, _N, _N, _N, _N, _N, _N, _N, _N, _P, _P, _P, _I), _I),
}
_state = {"lib": None}


class EngineError(UserError):
    """An export, a model or a machine the inference engine cannot run: one line, nothing written."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _verified(target: Path) -> bool:
    sidecar = target.with_name(target.name + ".sha256")
    try:
        return target.is_file() and sidecar.read_text().strip() == _sha256(target)
    except OSError:
        return False


def build(directory: Path | None = None) -> Path:
    """The cached library for this source, compiler and CPU: verified, or (re)built; its path."""
    found = compiler()
    if found is None:
        raise EngineError(f"the inference engine needs a C compiler: {os.environ.get('CC') or 'cc'} is not on PATH")
    cc, version = found
    directory = Path(directory or cache_dir())
    target = directory / f"proxbench-infer-{cache_key(list(SOURCES), version, FLAGS)}.so"
    if _verified(target):
        return target
    partial, error = compile_library(cc, FLAGS, list(SOURCES), directory)
    if partial is None:
        raise EngineError(f"building {' + '.join(src.name for src in SOURCES)} failed: {error}")
    try:
        fd, partial_sum = tempfile.mkstemp(dir=directory, suffix=".sha256.partial")
        with os.fdopen(fd, "w") as fh:
            fh.write(_sha256(partial) + "\n")
        os.replace(partial, target)  # the library first, then its checksum: a reader sees both or rebuilds
        os.replace(partial_sum, target.with_name(target.name + ".sha256"))
    finally:
        if partial.exists():
            partial.unlink()
    return target


def library():
    """The loaded library (built and verified at first use)."""
    lib = _state["lib"]
    if lib is None:
        path = build()
        if not _verified(path):
            raise EngineError(f"{path}: checksum mismatch after building (a concurrent writer?): run again")
        lib = ctypes.CDLL(str(path))
        for name, (argtypes, restype) in _SIGNATURES.items():
            getattr(lib, name).argtypes = argtypes
            getattr(lib, name).restype = restype
        _state["lib"] = lib
    return lib


def cpu_isa() -> int:
    """The best kernel this CPU runs: 2 AVX-512 VPOPCNTDQ, 1 AVX2, 0 portable."""
    return int(library().ie_cpu_isa())


def selected_isa(name: str | None = None) -> int:
    """The kernel to run: ``name`` (else ``$PROXBENCH_INFER_ISA``, else ``auto``); an EngineError when this CPU
    lacks its instructions or the name is unknown."""
    name = (name or os.environ.get(ISA_ENV) or "auto").strip().lower()
    best = cpu_isa()
    if name == "auto":
        return best
    if name not in ISAS:
        raise EngineError(f"{ISA_ENV}={name!r}: unknown kernel (valid: auto, {', '.join(ISAS)})")
    if ISAS[name] > best:
        raise EngineError(f"{ISA_ENV}={name}: this CPU lacks the instructions of the {name} kernel (it has: "
                          f"{ISA_NAMES[best]}); nothing computed")
    return ISAS[name]
