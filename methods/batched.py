"""Every binarized layer quantized at once with multi-tensor (``torch._foreach_*``) ops: the default eager path.

The per-layer path runs α, F and B' for each layer: a handful of ops per layer, each a kernel launch on a
GPU (18 binarized convs in a ResNet-20: +523 aten ops per step for BNN++). Here the same maps run once per
step over the *list* of latents w_1 … w_n, each ``torch._foreach_*`` op one dispatch (one multi-tensor
kernel on CUDA; on CPU the per-tensor loop of the same ATen op, so the same bits):

    α_i = mean |w_i| (per tensor or per output channel; 1 for ``scale = "none"``), detached,
    x_i = w_i / α_i,     θ_i = α_i·F(x_i)                    (forward, ``Method.F_all``),
    grad_{w_i} = grad_{θ_i}·B'(x_i)                          (backward, ``Method.grad_dB_all``),

in one ``autograd.Function`` with n inputs and n outputs. The step hooks batch the same way
(``Method.before_step_all``/``after_step_all``/``clip_all``, called by ``methods.optimizer_step`` once per
optimizer group): w ← clamp(w, −c, c) is two foreach ops for every latent, rPC/PQ's proximal step
w ← (w + s·sign w)/(1 + s), s = η·ρ, five.

Elementwise forms, each a few foreach ops over a list and bit for bit the per-layer maps of
``methods.functional`` (the same ATen ops in the same order, rewritten only where IEEE arithmetic is exact):

* ``sign_all``: sign(x) = min(2·sgn(x) + 1, 1) with sgn ∈ {−1, 0, +1} (``torch.sign``), so ±0 → +1;
* ``linear_quantize_all``: LQ_ρ(x) = (x + ρ·sign x)/(1 + ρ);
* ``sign_swish_all``: SS_μ(x) = sign(x)·m, m = 2σ(z)(1 + z(1 − σ(z))) − 1 ≥ 0, z = μ|x| (per layer
  ``copysign(m, x)``: equal for m ≥ 0, except x = −0.0, where θ is +0.0 here and −0.0 there);
* ``sign_swish_grad_all``: SS'_μ(x) = σ(z)(1 − σ(z))·(2 − z(2σ(z) − 1))·2μ;
* ``soft_sign_prox_all``: sign(x)·(1 + sign(g)·max(|g| − s, 0)), g = |x| − 1 (``copysign(v, g)`` = v·sign(g)
  for v ≥ 0: g = −0.0 cannot occur).

1 − s is written −s + 1 and 2 − d as −d + 2 (the same IEEE result). NaN latents give NaN signs here (−1 in
``functional.sign``). The reductions of α stay per layer (a ``_foreach_norm`` sums in another order and
differs in the last bit); their division by the element count is one foreach op.

``BatchedWeights`` arms the cache like ``methods.fused.FusedWeights`` (a forward pre-hook on the root model,
the first binarized layer that reads its weight computes every θ, a forward hook drops them); under
``torch.compile`` and in the deployed model the per-layer path runs (dynamo fuses the elementwise ops itself).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .fused import FusedWeights


def sign_all(xs: list[Tensor]) -> list[Tensor]:
    """sign(x) = +1 for x ≥ 0 (±0 included), −1 for x < 0, for every tensor: min(2·sgn(x) + 1, 1)."""
    s = torch._foreach_sign(xs)
    torch._foreach_mul_(s, 2.0)
    torch._foreach_add_(s, 1.0)
    torch._foreach_clamp_max_(s, 1.0)
    return s


def linear_quantize_all(xs: list[Tensor], rho: float | Tensor, out: list[Tensor] | None = None) -> list[Tensor]:
    """LQ_ρ(x) = (x + ρ·sign x)/(1 + ρ) for every tensor; into ``out`` (e.g. the latents themselves) when given."""
    t = sign_all(xs)
    torch._foreach_mul_(t, rho)
    if out is None:
        torch._foreach_add_(t, xs)
        out = t
    else:
        torch._foreach_add_(out, t)
    torch._foreach_div_(out, 1.0 + rho)
    return out


def soft_sign_prox_all(xs: list[Tensor], s: float | Tensor) -> list[Tensor]:
    """sign(x)·(1 + sign(g)·max(|g| − s, 0)), g = |x| − 1: |x| moves towards 1 by s without passing it."""
    gap = torch._foreach_abs(xs)
    torch._foreach_sub_(gap, 1.0)
    v = torch._foreach_abs(gap)
    torch._foreach_sub_(v, s)
    torch._foreach_clamp_min_(v, 0.0)
    torch._foreach_mul_(v, sign_all(gap))
    torch._foreach_add_(v, 1.0)
    torch._foreach_mul_(v, sign_all(xs))
    return v


def _swish_parts(xs: list[Tensor], mu: float | Tensor) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """z = μ|x|, σ(z) and 1 − σ(z), the pieces SS_μ and SS'_μ share."""
    z = torch._foreach_abs(xs)
    torch._foreach_mul_(z, mu)
    s = torch._foreach_sigmoid(z)
    one_minus_s = torch._foreach_neg(s)
    torch._foreach_add_(one_minus_s, 1.0)
    return z, s, one_minus_s


def sign_swish_all(xs: list[Tensor], mu: float | Tensor) -> list[Tensor]:
    """SS_μ(x) = sign(x)·(2σ(z)·[1 + z·(1 − σ(z))] − 1), z = μ|x|."""
    z, s, t = _swish_parts(xs, mu)
    torch._foreach_mul_(t, z)
    torch._foreach_add_(t, 1.0)
    torch._foreach_mul_(t, s)
    torch._foreach_mul_(t, 2.0)
    torch._foreach_sub_(t, 1.0)
    torch._foreach_mul_(t, sign_all(xs))
    return t


def sign_swish_grad_all(xs: list[Tensor], mu: float | Tensor) -> list[Tensor]:
    """SS'_μ(x) = σ(z)(1 − σ(z))·(2 − z·(σ(z) − (1 − σ(z))))·2μ, z = μ|x|."""
    z, s, one_minus_s = _swish_parts(xs, mu)
    out = torch._foreach_mul(s, one_minus_s)
    d = torch._foreach_sub(s, one_minus_s)
    torch._foreach_mul_(d, z)
    torch._foreach_neg_(d)
    torch._foreach_add_(d, 2.0)
    torch._foreach_mul_(out, d)
    torch._foreach_mul_(out, 2.0 * mu)
    return out


def alphas_all(latents: list[Tensor], scale: str) -> list[Tensor]:
    """α_i = max(mean |w_i|, 1e-12) per tensor or per output channel, bit for bit ``channel_scale``."""
    with torch.no_grad():
        absolute = torch._foreach_abs([w.detach() for w in latents])
        counts = []
        sums = []
        for a in absolute:
            if scale == "tensor" or a.dim() < 2:
                sums.append(a.sum())
                counts.append(a.numel())
            else:
                sums.append(a.sum(dim=tuple(range(1, a.dim())), keepdim=True))
                counts.append(a.numel() // a.shape[0])
        torch._foreach_div_(sums, counts)
        torch._foreach_clamp_min_(sums, 1e-12)
        return sums


class _AllLayers(torch.autograd.Function):
    """θ_i = α_i·F(w_i/α_i) for every i; grad_{w_i} = grad_{θ_i}·B'(w_i/α_i) (α given, detached; None: 1)."""

    @staticmethod
    def forward(ctx, method, alphas, *latents):
        ctx.method = method
        xs = list(latents) if alphas is None else torch._foreach_div(list(latents), alphas)
        out = method.F_all(xs)
        if alphas is not None:
            torch._foreach_mul_(out, alphas)
        if not method.identity_backward:
            ctx.save_for_backward(*xs)
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads):
        if ctx.method.identity_backward:
            return (None, None, *grads)
        return (None, None, *ctx.method.grad_dB_all(list(grads), list(ctx.saved_tensors)))


def quantize_all(latents: list[Tensor], method) -> list[Tensor]:
    """θ_i = α_i·F(w_i/α_i) of every latent, differentiable with gradient grad_{θ_i}·B'(w_i/α_i)."""
    alphas = None if method.scale == "none" else alphas_all(latents, method.scale)
    return list(_AllLayers.apply(method, alphas, *latents))


class BatchedWeights(FusedWeights):
    """``FusedWeights``' per-forward cache with the multi-tensor computation above instead of a flat tensor."""

    def compute(self) -> list[Tensor]:
        return quantize_all([layer.parametrizations.weight.original for layer in self.layers], self.method)
