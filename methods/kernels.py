"""One-pass CPU loops for the quantizers of the W1A1 methods, built from ``kernels.c`` at first use.

An activation quantizer touches every element of a layer's input: sign in the forward, B'(x)·grad in the
backward. Written with PyTorch operators, each step of the formula is a pass over the whole tensor (sign is
two, ReCU's normalised ApproxSign' about ten, FDA's series one per term), and on a CPU those passes, not the
arithmetic, are what a W1A1 step pays for. ``kernels.c`` writes each quantizer's forward and backward as one
loop over the data (ReCU's per-sample statistics: two loops over a sample that sits in cache), split across
torch's own OpenMP threads; ReCU's weight Function (about 20 small operators each way) and FDA's weight
backward are one call each. The library is compiled once per machine with the system C compiler (``$CC``,
else ``cc``; under a second) into ``$PROXBENCH_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/proxbench``, else
``~/.cache/proxbench``, named by a hash of the source, the compiler, its flags and the CPU's instruction
set, then by the sha256 of its own bytes (``proxbench-kernels-<key>-<sha256>.so``), and loaded with ``ctypes``.
The cache is verified, not trusted by name: before a cached library is loaded its bytes must hash to the
name's checksum, and once loaded it must export every function below; a truncated, foreign or unloadable
library is deleted and rebuilt (one warning), and if that fails too the eager forms run (one warning).
``PROXBENCH_KERNELS`` is ``c`` (or unset: the library when it helps) or ``eager``; any other value is a
``MethodError`` naming the valid ones at the first W1A1 quantizer call (``check_environment``).

Each function below returns the result, or None when the caller should use its eager PyTorch form:

* a tensor is not float32 on the CPU, not contiguous, or (activations) has fewer than ``MIN_ELEMENTS``
  elements (there the eager form costs as little);
* the kernels are switched off: ``PROXBENCH_KERNELS=eager`` in the environment, or ``set_enabled(False)``;
* the call happens while ``torch.compile`` traces (the eager form is what it can see);
* building or loading the library failed on this machine (no C compiler, say): warned once, eager from then on.

Agreement with the eager forms: signs and every elementwise backward (ApproxSign', RSign, DoReFa, the clipped
ones) bit for bit for finite gradients (no fused multiply-add: ``-ffp-contract=off``, and the eager forms'
order of operations); FDA's series to float32 rounding (one fused multiply-add per term; bit for bit where
ATen's ``addcmul`` fuses too, as on this project's AVX-512 test machine); FDA's noise term sin(x)·c and
its backward cos(x)·c (``fda_forward``/``fda_backward``) to an ulp of sin and cos (glibc's vector forms, not
ATen's SLEEF: added to ±1 the forward differs in about one element in two thousand, by one ulp); the
sums (ReCU's per-sample and per-channel statistics, RSign's ∂L/∂β, XNOR-Net++'s ∂L/∂(h ⊗ w)) are taken in
another order than ATen's, so they differ in the last bits.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor

from methods.errors import MethodError
from methods.kernel_cache import CACHE_ENV, REJECTED, build, cache_dir  # noqa: F401 - part of this API

MIN_ELEMENTS = 1 << 16
ENV = "PROXBENCH_KERNELS"  # "eager": never build nor use the library
ENV_VALUES = ("c", "eager")  # and unset or empty: "c"
FOURIER_TERMS = 16  # FDA's power series: at most this many coefficients (``kernels.c``'s fixed trip count)

_state = {"enabled": os.environ.get(ENV, "").strip().lower() != "eager", "failed": False, "lib": None,
          "checked_env": False}

_P, _N, _T = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
_SIGNATURES = {
    "pb_sign": (_P, _P, _N, _T),
    "pb_approx_sign_backward": (_P, _P, _P, _N, _T),
    "pb_unit_interval_backward": (_P, _P, _P, _N, _T),
    "pb_fourier_backward": (_P, _P, _P, _P, _N, _T),
    "pb_fda_forward": (_P, _P, ctypes.c_float, _N, _T),
    "pb_fda_backward": (_P, _P, _P, ctypes.c_float, _P, _N, _T),
    "pb_rsign_forward": (_P, _P, _P, _N, _N, _N, _T),
    "pb_rsign_backward": (_P, _P, _P, _P, _P, _N, _N, _N, _T),
    "pb_recu_forward": (_P, _P, _P, _P, _N, _N, _T),
    "pb_recu_backward": (_P, _P, _P, _P, _P, _N, _N, _T),
    "pb_recu_weight_forward": (_P, _P, ctypes.c_float, _P, _P, _P, _P, _N, _N, _T),
    "pb_recu_weight_backward": (_P, _P, _P, _P, _P, ctypes.c_float, _P, _P, _N, _N, _T),
}


def set_enabled(enabled: bool) -> bool:
    """Switch the kernels on or off for this process; returns the previous setting."""
    previous = _state["enabled"]
    _state["enabled"] = bool(enabled)
    return previous


def check_environment() -> None:
    """Raise a ``MethodError`` when ``$PROXBENCH_KERNELS`` is set to anything but ``c`` or ``eager``."""
    value = os.environ.get(ENV, "").strip()
    if value.lower() not in ("", *ENV_VALUES):
        shown = value if len(value) <= 80 else value[:80] + "…"
        raise MethodError(f"{ENV}={shown!r} is not a valid value (valid: {', '.join(ENV_VALUES)}; unset means c)")
    _state["checked_env"] = True


def describe() -> str:
    """How this process runs the W1A1 quantizers' elementwise work, as run records note it: "c <library
    name>" once the library is loaded, "c" while enabled and not needed yet, "eager" when switched off
    (``PROXBENCH_KERNELS=eager`` or ``set_enabled(False)``), "eager (build failed)"."""
    if _state["failed"]:
        return "eager (build failed)"
    if not _state["enabled"]:
        return "eager"
    return f"c {Path(_state['lib']._name).stem}" if _state["lib"] is not None else "c"


def _library():
    lib = _state["lib"]
    if lib is None:
        path = build()
        try:
            lib = _load(path)
        except (OSError, AttributeError) as exc:  # verified, yet not loadable here: rebuilt once
            REJECTED.append(f"{path.name} ({' '.join(str(exc).split())[:200]})")
            path.unlink(missing_ok=True)
            lib = _load(build())
        _state["lib"] = lib
        if REJECTED:
            rejected, REJECTED[:] = ", ".join(REJECTED), []
            warnings.warn(f"methods.kernels: the cached CPU kernel library {rejected} "
                          "was truncated, foreign or not loadable: deleted and rebuilt", RuntimeWarning, stacklevel=4)
    return lib


def _load(path: Path):
    lib = ctypes.CDLL(str(path))  # torch is loaded: its libgomp.so.1 is the one the library uses
    for name, argtypes in _SIGNATURES.items():
        getattr(lib, name).argtypes = argtypes  # AttributeError: not our library
        getattr(lib, name).restype = None
    return lib


def usable(*tensors: Tensor, min_elements: int = MIN_ELEMENTS) -> bool:
    """Would the kernels run for these tensors (the first decides the size)?"""
    if torch.compiler.is_compiling():  # first: no guard on ``_state`` (it changes at the first eager call)
        return False
    if not _state["checked_env"]:
        check_environment()
    if not _state["enabled"] or _state["failed"]:
        return False
    if tensors[0].numel() < min_elements:
        return False
    return all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() for t in tensors)


def _call(name: str, *args) -> bool:
    """``name(*args, threads)`` from the library; False (warned once) when it cannot be built or loaded."""
    try:
        lib = _library()
    except Exception as exc:  # noqa: BLE001 - a machine that cannot build falls back to the eager forms
        _state["failed"] = True
        text = " ".join(str(exc).split())[:300]
        if REJECTED:
            text += f"; the cached {', '.join(REJECTED)} was truncated, foreign or not loadable and was deleted"
            REJECTED[:] = []
        warnings.warn(f"methods.kernels: building the CPU kernels failed ({type(exc).__name__}: {text}); the "
                      f"W1A1 quantizers run their eager form from now on (set {ENV}=eager to skip this)",
                      RuntimeWarning, stacklevel=3)
        return False
    getattr(lib, name)(*args, torch.get_num_threads())
    return True


def _new(x: Tensor) -> Tensor:
    return torch.empty_like(x, requires_grad=False, memory_format=torch.contiguous_format)


def sign(x: Tensor) -> Tensor | None:
    """+1 where x ≥ 0 (±0 included), −1 elsewhere."""
    if not usable(x):
        return None
    out = _new(x)
    return out if _call("pb_sign", x.data_ptr(), out.data_ptr(), x.numel()) else None


def _elementwise_backward(name: str, grad: Tensor, x: Tensor) -> Tensor | None:
    if not usable(x, grad) or grad.shape != x.shape:
        return None
    out = _new(x)
    return out if _call(name, grad.data_ptr(), x.data_ptr(), out.data_ptr(), x.numel()) else None


def approx_sign_backward(grad: Tensor, x: Tensor) -> Tensor | None:
    """grad·max(0, 2 − 2|x|) (Bi-Real Net's ApproxSign')."""
    return _elementwise_backward("pb_approx_sign_backward", grad, x)


def unit_interval_backward(grad: Tensor, x: Tensor) -> Tensor | None:
    """grad·1[0 ≤ x ≤ 1] (DoReFa's 1-bit activation; −0 is inside)."""
    return _elementwise_backward("pb_unit_interval_backward", grad, x)


@functools.lru_cache(maxsize=None)
def _padded_floats(values: tuple[float, ...]):
    """``values`` as a C float array zero-padded to ``FOURIER_TERMS``."""
    return (ctypes.c_float * FOURIER_TERMS)(*values)


def fourier_backward(grad: Tensor, x: Tensor, coefficients: tuple[float, ...]) -> Tensor | None:
    """grad·Σ_k a_k·x^{2k} where |x| ≤ 1, else 0, by Horner's rule in x² over ``coefficients`` (a_0, a_1, …,
    at most ``FOURIER_TERMS``): FDA's B' as a power series (``methods.activation_grads.fourier_series_coefficients``).
    Any size: FDA's weights too (one call instead of ~12 operators)."""
    if not 0 < len(coefficients) <= FOURIER_TERMS or not usable(x, grad, min_elements=0) or grad.shape != x.shape:
        return None
    out = _new(x)
    c = _padded_floats(tuple(coefficients))
    ok = _call("pb_fourier_backward", grad.data_ptr(), x.data_ptr(), ctypes.addressof(c), out.data_ptr(), x.numel())
    return out if ok else None


def fda_forward(x: Tensor, c: float) -> Tensor | None:
    """sign(x) + c·sin(x) (FDA's activation with the noise term of a layer too narrow for the hidden noise
    layers, c = 0.1·λ(t)); sin from glibc's vector math library where there is one (x86-64 Linux): within an
    ulp of ATen's, so the sum with ±1 is ATen's but for about one element in a thousand (one ulp)."""
    if not usable(x):
        return None
    out = _new(x)
    return out if _call("pb_fda_forward", x.data_ptr(), out.data_ptr(), c, x.numel()) else None


def fda_backward(grad: Tensor, x: Tensor, coefficients: tuple[float, ...], c: float) -> Tensor | None:
    """grad·Σ_k a_k·x^{2k}·1[|x| ≤ 1] + (grad·c)·cos(x): ``fda_forward``'s backward, with FDA's B' as
    ``fourier_backward`` computes it (cos as ``fda_forward``'s sin: within an ulp of ATen's)."""
    if not 0 < len(coefficients) <= FOURIER_TERMS or not usable(x, grad) or grad.shape != x.shape:
        return None
    out = _new(x)
    coef = _padded_floats(tuple(coefficients))
    ok = _call("pb_fda_backward", grad.data_ptr(), x.data_ptr(), ctypes.addressof(coef), c, out.data_ptr(),
               x.numel())
    return out if ok else None


def _channel_layout(x: Tensor, beta: Tensor) -> tuple[int, int, int] | None:
    """(outer, channels, inner) with x seen as [outer, channels, inner] and β one value per channel, when β
    broadcasts against x along a single dimension (or is a single value); else None."""
    shape = (1,) * (x.dim() - beta.dim()) + tuple(beta.shape)
    if beta.dim() > x.dim() or any(b not in (1, s) for b, s in zip(shape, x.shape)):
        return None
    wide = [d for d, b in enumerate(shape) if b > 1]
    if len(wide) > 1:
        return None
    d = wide[0] if wide else 0
    return x.shape[:d].numel(), x.shape[d] if wide else 1, x.shape[d + 1:].numel() * (1 if wide else x.shape[0])


def rsign_forward(x: Tensor, beta: Tensor) -> Tensor | None:
    """sign(x − β), β of x's dtype broadcast along one dimension of x (ReActNet's RSign calls it with −β)."""
    layout = _channel_layout(x, beta)
    if layout is None or not usable(x, beta):
        return None
    out = _new(x)
    return out if _call("pb_rsign_forward", x.data_ptr(), beta.data_ptr(), out.data_ptr(), *layout) else None


def rsign_backward(grad: Tensor, x: Tensor, beta: Tensor) -> tuple[Tensor, Tensor] | None:
    """(h, −Σ h) with h = grad·ApproxSign'(x − β), the sum over the dimensions β is broadcast along."""
    layout = _channel_layout(x, beta)
    if layout is None or not usable(x, grad, beta) or grad.shape != x.shape:
        return None
    out, grad_beta = _new(x), torch.empty(beta.shape, dtype=x.dtype)
    ok = _call("pb_rsign_backward", grad.data_ptr(), x.data_ptr(), beta.data_ptr(), out.data_ptr(),
               grad_beta.data_ptr(), *layout)
    return (out, grad_beta) if ok else None


def recu_forward(x: Tensor) -> tuple[Tensor, Tensor, Tensor] | None:
    """sign(x) and, per sample (dim 0), mean(x) and s = sqrt(Var(x) + 1e-5) (Var unbiased over the rest), the
    two shaped (N, 1, …, 1)."""
    if x.dim() < 2 or x[0].numel() < 2 or not usable(x):
        return None
    stats = (x.shape[0],) + (1,) * (x.dim() - 1)
    out, mean, s = _new(x), torch.empty(stats, dtype=torch.float32), torch.empty(stats, dtype=torch.float32)
    ok = _call("pb_recu_forward", x.data_ptr(), out.data_ptr(), mean.data_ptr(), s.data_ptr(), x.shape[0],
               x[0].numel())
    return (out, mean, s) if ok else None


def recu_backward(grad: Tensor, x: Tensor, mean: Tensor, s: Tensor) -> Tensor | None:
    """ReCU's activation backward: h/s − (Σ (h/s)·x)/(s²(M − 1))·(x − mean), h/s = grad·max(0, 2/s − 2|x|/s²),
    per sample (``recu_forward``'s mean and s)."""
    if x.dim() < 2 or not usable(x, grad, mean, s) or grad.shape != x.shape:
        return None
    out = _new(x)
    ok = _call("pb_recu_backward", grad.data_ptr(), x.data_ptr(), mean.data_ptr(), s.data_ptr(), out.data_ptr(),
               x.shape[0], x[0].numel())
    return out if ok else None


def recu_weight_forward(w: Tensor, a: Tensor, tau: float) -> tuple[Tensor, Tensor, Tensor, float] | None:
    """ReCU's weight forward for any size of weight (one call instead of ~20 operators): (a·sign(ŵ), the
    per-channel mean and r of ŵ = (w − mean)/r, r = sqrt(Var + 1e-5)/(2√2), and Q_τ = −E|ŵ|·ln(2 − 2τ)), with
    ``a`` one scale per output channel (dim 0) shaped (C, 1, …)."""
    channels = w.shape[0] if w.dim() >= 2 else 0
    if not channels or w.numel() // channels < 2 or a.numel() != channels or not usable(w, a, min_elements=0):
        return None
    stats = (channels,) + (1,) * (w.dim() - 1)
    out, mean, r, q = (_new(w), *(torch.empty(size, dtype=torch.float32) for size in (stats, stats, (1,))))
    ok = _call("pb_recu_weight_forward", w.data_ptr(), a.data_ptr(), -math.log(2.0 - 2.0 * tau), out.data_ptr(),
               mean.data_ptr(), r.data_ptr(), q.data_ptr(), channels, w.numel() // channels)
    return (out, mean, r, float(q)) if ok else None


def recu_weight_backward(grad: Tensor, w: Tensor, a: Tensor, mean: Tensor, r: Tensor, q: float,
                         need_a: bool) -> tuple[Tensor, Tensor | None] | None:
    """ReCU's weight backward from ``recu_weight_forward``'s statistics: (∂L/∂w, ∂L/∂a or None)."""
    if not usable(grad, w, a, mean, r, min_elements=0) or grad.shape != w.shape:
        return None
    grad_w = _new(w)
    grad_a = torch.empty(a.shape, dtype=torch.float32) if need_a else None
    ok = _call("pb_recu_weight_backward", grad.data_ptr(), w.data_ptr(), a.data_ptr(), mean.data_ptr(), r.data_ptr(),
               q, grad_w.data_ptr(), grad_a.data_ptr() if need_a else None, w.shape[0], w.numel() // w.shape[0])
    return (grad_w, grad_a) if ok else None
