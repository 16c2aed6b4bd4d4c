"""The elementwise maps every method is built from.

All functions act on tensors elementwise, never produce NaN or overflow for finite inputs, and follow
the conventions of Lu, Yu, Li & Partovi Nia, "Understanding Neural Network Binarization with Forward and
Backward Proximal Quantizers", NeurIPS 2023 (the PC++ paper):

Parameters (ρ, μ) are Python floats or 0-d tensors (a method's ``tensors``, see ``methods.schedule``): with a
float64 0-d tensor every function returns bit for bit what it returns for the equal float.

* ``sign(x) = +1 for x >= 0, -1 for x < 0`` (never 0, so a binarized weight is always ±α);
* ``LQ_ρ(x) = (x + ρ·sign(x)) / (1 + ρ)``: the proximal map of ``(ρ/2)·dist(x, {-1, +1})²``; identity at
  ρ = 0, tends to sign as ρ → ∞, derivative ``1/(1+ρ)`` away from 0;
* ``soft_sign_prox_s(x) = sign(x)·(1 + sign(|x| − 1)·max(||x| − 1| − s, 0))``: the proximal map of
  ``s·dist(x, {−1, +1})`` (ProxQuant's binary "W" regulariser, Bai et al., ICLR 2019): |x| moves towards 1 by
  s and stops there;
* ``SS_μ(x) = 2σ(μx)·[1 + μx·(1 − σ(μx))] − 1`` (SignSwish, BNN+ of Darabi et al. 2018), odd, overshoots to
  ≈1.1997 at |x| ≈ 2.3994/μ, tends to sign as μ → ∞; ``SS'_μ(x) = μ·(2 − μx·tanh(μx/2)) / (1 + cosh(μx))``.
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from . import kernels


_MINUS_ONE = torch.tensor(-1.0)


def sign(x: Tensor) -> Tensor:
    """sign(x) = +1 for x ≥ 0 and −1 for x < 0 (so sign(0) = +1, never 0; −0.0 ≥ 0 as well, so sign(−0.0) = +1).

    A large float32 CPU tensor (an activation) takes one pass (``methods.kernels.sign``); otherwise
    −1 + 2·1[x ≥ 0] with the comparison written straight into a tensor of x's dtype: two vectorised passes, no
    bool intermediate (``torch.where`` on a bool mask is an order of magnitude slower on CPU). The two agree bit
    for bit. Not differentiable (as any sign): the result never requires grad."""
    if not x.is_floating_point():
        return torch.where(x >= 0, 1, -1).to(x.dtype)
    fused = kernels.sign(x)  # one pass for a large float32 CPU tensor (an activation)
    if fused is not None:
        return fused
    out = torch.ge(x, 0, out=torch.empty_like(x, requires_grad=False))
    if out.device.type != "cpu":
        return out.mul_(2).sub_(1)
    return torch.add(_MINUS_ONE, out, alpha=2, out=out)


@functools.lru_cache(maxsize=None)
def just_above(value: float, dtype: torch.dtype) -> float:
    """The next float of ``dtype`` above ``value`` (so x < result ⇔ x ≤ value for every x of that dtype)."""
    return torch.nextafter(torch.tensor(value, dtype=dtype), torch.tensor(math.inf, dtype=dtype)).item()


def clip_grad_mul(grad: Tensor, x: Tensor, inclusive: bool = True, out: Tensor | None = None) -> Tensor:
    """grad·1[|x| ≤ 1] (``inclusive``) or grad·1[|x| < 1] in one pass: ``aten.hardtanh_backward`` keeps grad
    where lo < x < hi and writes 0 elsewhere (a select: whatever grad holds outside, even inf or nan, becomes
    0); the inclusive form moves the bounds one float outwards. Into ``out`` when given, which may be ``grad``
    itself when grad is a temporary of the caller's."""
    edge = just_above(1.0, x.dtype) if inclusive else 1.0
    if out is None:
        return torch.ops.aten.hardtanh_backward(grad, x, -edge, edge)
    return torch.ops.aten.hardtanh_backward.grad_input(grad, x, -edge, edge, grad_input=out)


def linear_quantizer(x: Tensor, rho: float | Tensor) -> Tensor:
    """LQ_ρ(x) = (x + ρ·sign(x)) / (1 + ρ): prox of (ρ/2)·dist(x, {±1})². At x = 0 it gives ρ/(1+ρ)."""
    return (x + rho * sign(x)) / (1.0 + rho)


def clamp_quantizer(x: Tensor, rho: float | Tensor) -> Tensor:
    """The optional second form of LQ: clamp((1+ρ)·x, −1, 1) (``lq = "clamp"``). 0 maps to 0."""
    return torch.clamp((1.0 + rho) * x, -1.0, 1.0)


def soft_sign_prox(x: Tensor, s: float) -> Tensor:
    """sign(x)·(1 + sign(|x| − 1)·max(||x| − 1| − s, 0)): |x| moves towards 1 by s without passing it.

    The prox of s·min(|x − 1|, |x + 1|), ProxQuant's binary regulariser (Bai et al., ICLR 2019). It maps 0 to
    +s (our sign(0) = +1) and ±1 to themselves; for s ≥ 1 and |x| ≤ 1 it is sign(x).
    """
    gap = x.abs() - 1.0
    return sign(x) * (1.0 + torch.copysign(torch.clamp(gap.abs() - s, min=0.0), gap))


def sign_swish(x: Tensor, mu: float | Tensor) -> Tensor:
    """SS_μ(x) = 2σ(μx)·[1 + μx·(1 − σ(μx))] − 1, evaluated as sign(x)·SS_μ(|x|).

    With z = μ|x| ≥ 0: σ(z) ∈ [½, 1] and z·(1 − σ(z)) ≤ 0.279, so nothing overflows for any finite x, μ.
    SS_μ(0) = 0.
    """
    z = x.abs() * mu
    s = torch.sigmoid(z)
    magnitude = s * (1.0 + z * (1.0 - s)) * 2.0 - 1.0
    return torch.copysign(magnitude, x)


def sign_swish_grad(x: Tensor, mu: float | Tensor) -> Tensor:
    """SS'_μ(x) = μ·(2 − μx·tanh(μx/2)) / (1 + cosh(μx)), evaluated stably.

    Uses 1/(1 + cosh z) = 2σ(z)(1 − σ(z)) and tanh(z/2) = 2σ(z) − 1 with z = μ|x| (SS' is even), so large
    |μx| gives 0, never inf/inf. SS'_μ(0) = μ; it is negative for |x| > 2.3994/μ.
    """
    z = x.abs() * mu
    s = torch.sigmoid(z)
    one_minus_s = 1.0 - s
    return (s * one_minus_s) * (2.0 - z * (s - one_minus_s)) * (2.0 * mu)
