"""Fused CPU kernels for the activation quantizers' elementwise work (W1A1), compiled by inductor on first use.

An activation quantizer touches every element of a layer's input several times. ReCU's sign needs a
per-sample mean and variance in the forward and a per-sample Σ h·x in the backward, FDA's backward a
polynomial of ~10 terms, RSign's backward a shifted ApproxSign' and a per-channel sum: in eager PyTorch each
step is an operator call that reads and writes the whole tensor (8–12 passes where sign needs 2). The
functions here state that math once, as plain tensor code; ``run`` executes them compiled by
``torch.compile`` (inductor's C++/OpenMP code generation, ``dynamic=True``: one kernel for every batch size
of a rank), where each becomes one or two loops over the data. Their callers in ``methods.activations`` keep
an eager form tuned for few passes, used whenever ``run`` returns None:

* the tensor is not float32 on the CPU, or has fewer than ``MIN_ELEMENTS`` elements (there the eager form is
  as fast, and nothing is compiled: unit tests and weights stay eager);
* kernels are switched off: ``PROXBENCH_KERNELS=eager`` in the environment, or ``set_enabled(False)``;
* compiling failed on this machine (no C++ compiler, say): warned once, eager from then on.

On CUDA the eager form runs (there ``capture = "compile"`` compiles the whole training step). The first call
of each kernel in a process compiles it: about 30 s on a 2-core CPU with a cold inductor cache, about 2 s
once the cache (``/tmp/torchinductor_<user>`` by default) holds it. The compiled and eager forms agree to
float32 rounding (sums in another order, fused multiply-adds), not bit for bit.
"""

from __future__ import annotations

import os
import warnings
from typing import Callable

import torch
from torch import Tensor

MIN_ELEMENTS = 1 << 16
ENV = "PROXBENCH_KERNELS"  # "eager": never compile
FDA_MAX_TERMS = 16  # power-series coefficients padded to this many (zeros on top leave Horner's rule exact)

_state = {"enabled": os.environ.get(ENV, "").strip().lower() != "eager", "failed": False}
_compiled: dict[Callable, Callable] = {}


def set_enabled(enabled: bool) -> bool:
    """Switch the compiled kernels on or off for this process; returns the previous setting."""
    previous = _state["enabled"]
    _state["enabled"] = bool(enabled)
    return previous


def usable(x: Tensor) -> bool:
    """Would ``run`` compile for a tensor like ``x``?"""
    return (_state["enabled"] and not _state["failed"] and x.device.type == "cpu" and x.dtype == torch.float32
            and x.numel() >= MIN_ELEMENTS and x.is_contiguous() and not torch.compiler.is_compiling())


def run(fn: Callable, *args):
    """``fn(*args)`` compiled, or None when the caller should use its eager form (see the module docstring).
    The first argument decides; every argument of its size must be float32 and contiguous as well (a gradient
    may arrive expanded, and each new stride pattern would compile again)."""
    first = args[0]
    if not usable(first) or any(isinstance(a, Tensor) and a.numel() == first.numel() and
                                (a.dtype != first.dtype or not a.is_contiguous()) for a in args[1:]):
        return None
    compiled = _compiled.get(fn)
    if compiled is None:
        compiled = _compiled[fn] = torch.compile(fn, dynamic=True, fullgraph=True)
    try:
        return compiled(*args)
    except Exception as exc:  # noqa: BLE001 - a machine that cannot compile falls back to the eager form
        _state["failed"] = True
        text = " ".join(str(exc).split())[:300]
        warnings.warn(f"methods.kernels: compiling {fn.__name__} failed ({type(exc).__name__}: {text}); the "
                      f"activation quantizers run their eager form from now on (set {ENV}=eager to skip this)",
                      RuntimeWarning, stacklevel=2)
        return None


def _sign(x: Tensor) -> Tensor:
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def _sample_dims(x: Tensor) -> tuple[int, ...]:
    return tuple(range(1, x.dim()))


def recu_sign_forward(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """sign(x) and, per sample, mean(x) and s = sqrt(Var(x) + 1e-5) (Var unbiased over all but dim 0)."""
    dims = _sample_dims(x)
    m = x.numel() // x.shape[0]
    mean = x.mean(dim=dims, keepdim=True)
    centred = x - mean
    s = torch.sqrt((centred * centred).sum(dim=dims, keepdim=True) / (m - 1) + 1e-5)
    return _sign(x), mean, s


def recu_sign_backward(grad: Tensor, x: Tensor, mean: Tensor, s: Tensor) -> Tensor:
    """∂L/∂x of sign(x/s) with ApproxSign' at x/s and the normalisation's own derivative (``recu-sign``):
    h/s − (Σ (h/s)·x)/(s²(M − 1))·(x − mean), h/s = grad·max(0, 2/s − 2|x|/s²)."""
    dims = _sample_dims(x)
    m = x.numel() // x.shape[0]
    inv = 1.0 / s
    h_over_s = grad * torch.clamp_min(2.0 * inv - 2.0 * x.abs() * inv * inv, 0.0)
    c = (h_over_s * x).sum(dim=dims, keepdim=True) * (inv * inv / (m - 1))
    return h_over_s - c * (x - mean)


def approx_sign_backward(grad: Tensor, x: Tensor) -> Tensor:
    """grad·max(0, 2 − 2|x|) (Bi-Real Net's ApproxSign')."""
    return grad * torch.clamp_min(2.0 - 2.0 * x.abs(), 0.0)


def rsign_forward(x: Tensor, beta: Tensor) -> Tensor:
    """sign(x − β) (ReActNet's RSign)."""
    return _sign(x - beta)


def rsign_backward(grad: Tensor, x: Tensor, beta: Tensor) -> tuple[Tensor, Tensor]:
    """(h, −Σ h) with h = grad·ApproxSign'(x − β), the sum over the dimensions β is broadcast along."""
    h = grad * torch.clamp_min(2.0 - 2.0 * (x - beta).abs(), 0.0)
    return h, -h.sum_to_size(beta.shape)


def fourier_sign_backward(grad: Tensor, x: Tensor, coefficients: Tensor) -> Tensor:
    """grad·Σ_k a_k·x^{2k}·1[|x| ≤ 1] by Horner's rule over ``coefficients`` (a_0 … a_{K−1}, zero-padded to
    ``FDA_MAX_TERMS``): FDA's B' as a power series (``methods.activations._fourier_series_coefficients``)."""
    u = x * x
    p = torch.zeros_like(x)
    for k in range(FDA_MAX_TERMS - 1, -1, -1):
        p = p * u + coefficients[k]
    return torch.where(x.abs() <= 1.0, grad * p, 0.0)
