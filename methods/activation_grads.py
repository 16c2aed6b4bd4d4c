"""The backward factors B'(x) of the activation quantizers (and of the W1A1 weights that share them), and FDA's
noise adaptation.

BNN's clipped straight-through 1[|x| ≤ 1] (Hubara et al., NeurIPS 2016), Bi-Real Net's ApproxSign'
max(0, 2 − 2|x|) (Liu et al., ECCV 2018), FDA's truncated Fourier series (4ω/π)·Σ_{i≤n} cos((2i+1)ωx) on
|x| ≤ 1 (Xu et al., NeurIPS 2021) and its noise residual λ(t)·e(x), λ(t) = 0.05·(1 + cos(πt)) (0.1 at t = 0,
0 at t = 1). Used by ``methods.activations`` and ``methods.w1a1``.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from . import kernels
from .functional import clip_grad_mul


# -- the elementwise backward factors ---------------------------------------------------------------------
# Each ``*_grad`` gives the factor B'(x); each ``*_grad_mul`` gives grad·B'(x), the backward itself, fused into
# a few in-place vectorised passes (no bool masks, no ``torch.where``: on CPU both are an order of magnitude
# slower than a float pass). grad·1[|x| ≤ 1] is ``methods.functional.clip_grad_mul`` (one pass).
def ste_clip_grad(x: Tensor) -> Tensor:
    """1[|x| ≤ 1]."""
    return clip_grad_mul(torch.ones_like(x), x)


def approx_sign_grad(x: Tensor) -> Tensor:
    """ApproxSign' (Bi-Real Net): 2 − 2|x| for |x| < 1, else 0 (2 at 0, 0 at ±1)."""
    return x.abs().mul_(-2.0).add_(2.0).clamp_min_(0.0)


def approx_sign_grad_mul(grad: Tensor, x: Tensor) -> Tensor:
    """grad·max(0, 2 − 2|x|): one pass (``methods.kernels``), else five in-place eager passes."""
    fused = kernels.approx_sign_backward(grad, x)
    return fused if fused is not None else approx_sign_grad(x).mul_(grad)


# The closed form of FDA's sum needs sin θ ≠ 0 for 0 < |θ| ≤ ω (|x| ≤ 1) and a well-conditioned quotient:
# used for ω ≤ π/2, the direct sum of cosines beyond.
_FDA_CLOSED_FORM_MAX_OMEGA = math.pi / 2
# |x| is floored at this (B' is even and flat at 0: B'(δ)/B'(0) − 1 ≈ (2/3)(n+1)²(ωδ)², far below any float's
# resolution), so the quotient never meets 0/0 nor a subnormal sin(ωx).
_FDA_FLOOR = 1e-20
# The power series in x² is used (float32 and below) while the top frequency (2n+1)ω is at most this: its
# alternating terms then stay small next to the sum (no digits lost to cancellation).
_FDA_SERIES_MAX_FREQUENCY = 4.0
# ... and is truncated where the omitted tail on |x| ≤ 1 is below this fraction of B'(0), far below float32's
# resolution (6e-8).
_FDA_SERIES_TOLERANCE = 1e-9


@functools.lru_cache(maxsize=None)
def fourier_series_coefficients(n: int, omega: float) -> tuple[float, ...] | None:
    """a_0, …, a_K with (4ω/π)·Σ_{i=0}^{n} cos((2i+1)ωx) = Σ_k a_k·x^{2k} + tail, |tail| on |x| ≤ 1 below
    ``_FDA_SERIES_TOLERANCE``·B'(0): a_k = (4ω/π)·(−1)^k·Σ_i ((2i+1)ω)^{2k}/(2k)! (the cosines' Taylor series;
    alternating with decreasing terms, so the tail is at most the first omitted term). None when the top
    frequency exceeds ``_FDA_SERIES_MAX_FREQUENCY``."""
    freqs = [(2 * i + 1) * omega for i in range(n + 1)]
    if freqs[-1] > _FDA_SERIES_MAX_FREQUENCY:
        return None
    scale = 4.0 * omega / math.pi
    coefficients = []
    for k in range(64):
        coefficients.append(scale * (-1) ** k * sum(f ** (2 * k) for f in freqs) / math.factorial(2 * k))
        omitted = sum(f ** (2 * k + 2) for f in freqs) / math.factorial(2 * k + 2)
        if k >= 1 and omitted <= _FDA_SERIES_TOLERANCE * (n + 1):
            break
    return tuple(coefficients)


@functools.lru_cache(maxsize=None)
def _coefficient_tensors(coefficients: tuple[float, ...], dtype: torch.dtype, device: torch.device):
    return tuple(torch.tensor(c, dtype=dtype, device=device) for c in coefficients)


def _fourier_series_grad(x: Tensor, n: int, omega: float) -> Tensor:
    """(4ω/π)·Σ_{i=0}^{n} cos((2i+1)ωx) for every x (no mask), as a new tensor of x's dtype; equal to the
    direct sum of the n + 1 cosines up to float rounding, evaluated the cheapest way that keeps it so:

    * float32 (half precision is evaluated in float32) while (2n+1)ω ≤ 4 (ω = 0.1 and n ≤ 18: 3.7): the power
      series in u = x², Σ_k a_k·u^k (``fourier_series_coefficients``, truncated 1e-9·B'(0) short of the sum,
      ~10 terms), by Horner's rule, one fused pass (``addcmul``) per term; beyond |x| = 1 the values are
      meaningless but the caller masks them;
    * otherwise (float64, or higher frequencies) the closed form: with N = n + 1 terms and θ = ωx,
      Σ_{i=0}^{N−1} cos((2i+1)θ) = sin(2Nθ)/(2 sin θ) (the telescoping 2 sin θ cos((2i+1)θ) = sin((2i+2)θ) −
      sin(2iθ)), whose limit at θ → 0 is N; so the factor is (2ω/π)·sin(2Nθ)/sin θ, evaluated at |x| floored
      at 1e-20 (B' is even, and equal to its limit there to every float's precision): two sines instead of N
      cosines (for ω > π/2, where sin θ can vanish, the direct sum)."""
    n = int(n)
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    coefficients = fourier_series_coefficients(n, float(omega)) if xf.dtype == torch.float32 else None
    if coefficients is not None:
        c = _coefficient_tensors(coefficients, xf.dtype, xf.device)
        u = torch.mul(xf, xf)
        p = torch.addcmul(c[-2], u, c[-1])
        for ck in reversed(c[:-2]):
            torch.addcmul(ck, p, u, out=p)
        return p.to(x.dtype)
    if omega > _FDA_CLOSED_FORM_MAX_OMEGA:
        total = torch.zeros_like(xf)
        for i in range(n + 1):
            total += torch.cos((2 * i + 1) * omega * xf)
        return total.mul_(4.0 * omega / math.pi).to(x.dtype)
    a = xf.abs().clamp_min_(_FDA_FLOOR)
    num = torch.mul(a, 2.0 * (n + 1) * omega).sin_()
    num.div_(a.mul_(omega).sin_()).mul_(2.0 * omega / math.pi)
    return num.to(x.dtype)


def fourier_sign_grad(x: Tensor, n: int, omega: float) -> Tensor:
    """(4ω/π)·Σ_{i=0}^{n} cos((2i+1)ωx) on |x| ≤ 1, 0 outside (FDA)."""
    factor = _fourier_series_grad(x, n, omega)
    return clip_grad_mul(factor, x, out=factor)


def fourier_sign_grad_mul(grad: Tensor, x: Tensor, n: int, omega: float) -> Tensor:
    """grad·(4ω/π)·Σ_{i=0}^{n} cos((2i+1)ωx)·1[|x| ≤ 1] (FDA's backward): the power series in one pass
    (``methods.kernels``) where it applies, else ``_fourier_series_grad`` eagerly."""
    coefficients = fourier_series_coefficients(int(n), float(omega))  # cached per (n, ω)
    fused = kernels.fourier_backward(grad, x, coefficients) if coefficients is not None else None
    if fused is not None:
        return fused
    factor = _fourier_series_grad(x, n, omega).mul_(grad)
    return clip_grad_mul(factor, x, out=factor)


# -- FDA's noise adaptation (``fda`` weights and ``fda-sign`` activations) ---------------------------------

def noise_strength(t: float) -> float:
    """FDA's noise weight λ(t) = 0.05·(1 + cos(πt)): 0.1 at the start, 0 at the end."""
    return 0.05 * (1.0 + math.cos(math.pi * t))


def noise_parameters(features: int) -> dict[str, Tensor]:
    """FDA's noise-adaptation weights for ``features`` inputs: W₁ (features/64 × features) and W₂
    (features × features/64), each drawn as ``nn.Linear``'s default (U(±1/√fan_in)); none when
    features < 64 (the code's zero-width layers, which add nothing)."""
    hidden = features // 64
    if hidden == 0:
        return {}
    fc1, fc2 = torch.empty(hidden, features), torch.empty(features, hidden)
    torch.nn.init.kaiming_uniform_(fc1, a=math.sqrt(5))
    torch.nn.init.kaiming_uniform_(fc2, a=math.sqrt(5))
    return {"noise_fc1": fc1, "noise_fc2": fc2}


def noise_residual(x: Tensor, noise_fc1: Tensor | None = None, noise_fc2: Tensor | None = None) -> Tensor:
    """e(x) = W₂·relu(W₁·x) + 0.1·sin(x) along the last dimension of x (FDA's ``NoiseAdaption``)."""
    residual = torch.sin(x).mul_(0.1)
    if noise_fc1 is None:
        return residual
    hidden = torch.nn.functional.linear(x, noise_fc1.to(x.dtype)).relu_()
    return torch.nn.functional.linear(hidden, noise_fc2.to(x.dtype)).add_(residual)


def sample_mean_abs(x: Tensor) -> Tensor:
    """K = mean |x| per sample (over every dimension but the first), detached, shaped to broadcast."""
    with torch.no_grad():
        return x.abs().mean(dim=tuple(range(1, x.dim())), keepdim=True)


class FourierNoise:
    """FDA's schedule and backward, shared by its weights (``fda``) and its inputs (``fda-sign``): λ(t) after
    every progress update (0 with ``noise`` off), and B' the truncated Fourier series with ⌊n⌋ + 1 terms."""

    def set_progress(self, t: float) -> None:
        super().set_progress(t)
        self.noise_alpha = noise_strength(self.progress) if self.noise else 0.0

    def fourier_grad(self, x: Tensor) -> Tensor:
        return fourier_sign_grad(x, math.floor(self.n), self.omega)

    def fourier_grad_mul(self, grad: Tensor, x: Tensor) -> Tensor:
        return fourier_sign_grad_mul(grad, x, math.floor(self.n), self.omega)
