"""The autograd Functions of the BiBench W1A1 weight quantizers (BiBench, ICML 2023).

θ = sign(w) or α·sign(w) (α = ``method.alpha(w)``, detached) with the backward grad·dW(w) on the raw latent
(BiBench's clamp straight-through estimator 1[|w| ≤ 1] by default; α inside the gradient only where the
reference puts it), and ReCU's θ = a·sign(clamp(ŵ, −Q_τ, Q_τ)) with its exact backward through the clamp and
the standardisation (Xu et al., ICCV 2021). Used by ``methods.w1a1``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import kernels, traceable
from .functional import sign


class _SignGrad(torch.autograd.Function):
    """sign(w) in the forward; grad · method.dW(w) in the backward (w the raw latent)."""

    @staticmethod
    def forward(ctx, w: Tensor, method: "_ScaledSign") -> Tensor:
        ctx.method = method
        if not method.identity_backward:
            ctx.save_for_backward(w)
        return sign(w)

    @staticmethod
    def backward(ctx, grad: Tensor):
        if ctx.method.identity_backward:
            return grad, None
        (w,) = ctx.saved_tensors
        return ctx.method.grad_dW(grad, w), None


def sign_grad(w: Tensor, method) -> Tensor:
    if torch.compiler.is_compiling():  # one graph (methods.traceable)
        return traceable.sign_grad(w, method)
    return _SignGrad.apply(w, method)


class _ScaledSignGrad(torch.autograd.Function):
    """α·sign(w) in the forward, α = ``method.alpha(w)`` (detached). Backward: grad·dW(w) when the scale sits
    outside the reference's estimator (``(α·sign w).detach() − clamp(w).detach() + clamp(w)``: BiBench's
    XNOR, DoReFa, Bi-Real and ReActNet layers, whose latent gradient has no α), or (grad·α)·dW(w) when the
    reference multiplies the estimator's output by α (``alpha_in_gradient``: FDA), the autograd of
    ``α * _SignGrad(w)``; one node either way."""

    @staticmethod
    def forward(ctx, w: Tensor, method: "_ScaledSign") -> Tensor:
        alpha = method.alpha(w)
        ctx.method = method
        if method.identity_backward:
            ctx.save_for_backward(alpha if isinstance(alpha, Tensor) else None)
        else:
            ctx.save_for_backward(alpha if isinstance(alpha, Tensor) else None, w)
        ctx.alpha = None if isinstance(alpha, Tensor) else alpha
        return sign(w).mul_(alpha)

    @staticmethod
    def backward(ctx, grad: Tensor):
        saved = ctx.saved_tensors
        if ctx.method.alpha_in_gradient:
            grad = grad * (saved[0] if saved[0] is not None else ctx.alpha)
        if ctx.method.identity_backward:
            return grad, None
        return ctx.method.grad_dW(grad, saved[1]), None


def scaled_sign_grad(w: Tensor, method) -> Tensor:
    if torch.compiler.is_compiling():  # one graph (methods.traceable)
        return traceable.scaled_sign_grad(w, method)
    return _ScaledSignGrad.apply(w, method)


def channel_mean_abs(w: Tensor) -> Tensor:
    """mean |w| per output channel (dim 0), shaped to broadcast against w."""
    dims = tuple(range(1, w.dim()))
    return w.detach().abs().mean(dim=dims, keepdim=True) if dims else w.detach().abs()


class _ReCUWeight(torch.autograd.Function):
    """ReCU's θ = a·sign(clamp(ŵ, −Q_τ, Q_τ)) and its backward in one node: what autograd gives for
    ``a * sign_grad(rectified(w))``, written out. With ŵ = w0/r, w0 = w − mean w, r = R/(2√2),
    R = sqrt(Var(w0) + 1e-5) (Var unbiased over the M elements of a channel; w0 has mean 0, up to rounding),
    and g = grad·a·1[|ŵ| ≤ Q_τ] (straight through sign, then the clamp; Q_τ is detached):
    ∂L/∂w0 = g/r − (Σ g·w0)/(r²·R·4√2)·2w0/(M − 1) = g/r − (Σ g·w0)·w0/(8(M − 1)r³),
    ∂L/∂w = ∂L/∂w0 − mean(∂L/∂w0), ∂L/∂a = Σ grad·sign(w̃).
    Q_τ ≥ 0 (τ ∈ (0.5, 1)), so sign(clamp(ŵ, −Q_τ, Q_τ)) = sign(ŵ) (Q_τ = 0 only when every ŵ is 0)."""

    @staticmethod
    def forward(ctx, w: Tensor, a: Tensor, method: "ReCU") -> Tensor:
        a_w = a.to(w.dtype)
        fused = kernels.recu_weight_forward(w, a_w, method.tau)
        ctx.fused = fused is not None
        if ctx.fused:  # one call (``methods.kernels``); saved: w, a and the per-channel mean and r
            out, mean, r, ctx.q = fused
            ctx.save_for_backward(a, w, a_w, mean, r)
            return out
        dims = tuple(range(1, w.dim()))
        m = w.numel() // w.shape[0]
        w0 = w - w.mean(dim=dims, keepdim=True)
        r = torch.linalg.vector_norm(w0, dim=dims, keepdim=True).square_().div_(m - 1).add_(1e-5).sqrt_()
        r.mul_(1.0 / (2.0 * math.sqrt(2.0)))
        w1_abs, bits = _ReCUWeight.standardised(w0, r)
        q = w1_abs.mean().mul_(-math.log(2.0 - 2.0 * method.tau))  # Q_τ, as ``clamp_threshold`` (no host sync)
        ctx.save_for_backward(a, w0, a_w, r, w1_abs, q, bits)
        return bits * a_w

    @staticmethod
    def standardised(w0: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
        """(|ŵ|, sign(ŵ)) for ŵ = w0/r."""
        w1_abs = w0 / r
        bits = sign(w1_abs)
        return w1_abs.abs_(), bits

    @staticmethod
    def backward(ctx, grad: Tensor):
        if ctx.fused:
            a, w, a_w, mean, r = ctx.saved_tensors
            fused = kernels.recu_weight_backward(grad.contiguous(), w, a_w, mean, r, ctx.q, ctx.needs_input_grad[1])
            if fused is not None:
                return fused[0], None if fused[1] is None else fused[1].to(a.dtype), None
            w0 = w - mean  # the kernels were switched off since the forward: the same backward eagerly
            w1_abs, bits = _ReCUWeight.standardised(w0, r)
            q = torch.tensor(ctx.q, dtype=w.dtype)
        else:
            a, w0, a_w, r, w1_abs, q, bits = ctx.saved_tensors
        dims = tuple(range(1, w0.dim()))
        m = w0.numel() // w0.shape[0]
        grad_a = None
        if ctx.needs_input_grad[1]:
            grad_a = (grad * bits).sum_to_size(a.shape).to(a.dtype)
        g_over_r = torch.le(w1_abs, q, out=torch.empty_like(w1_abs)).mul_(grad).mul_(a_w / r)
        # Σ (g/r)·w0 times the factor of w0, −1/(8(M − 1)r²), per channel
        k = torch.mul(g_over_r, w0).sum(dim=dims, keepdim=True).mul_(r.square().mul_(-8.0 * (m - 1)).reciprocal_())
        grad_w0 = g_over_r.addcmul_(w0, k)
        return grad_w0.sub_(grad_w0.mean(dim=dims, keepdim=True)), grad_a, None


def recu_weight(w: Tensor, a: Tensor, method: "ReCU") -> Tensor:
    if torch.compiler.is_compiling():  # one graph (methods.traceable)
        return traceable.recu_weight(w, a, method)
    return _ReCUWeight.apply(w, a, method)
