"""The autograd Functions of the activation quantizers whose forward and backward are not an elementwise
(F, B') pair on x: XNOR-Net's K·sign(x) with K outside the estimator (BiBench's XNOR layer), ReActNet's RSign
sign(x + β) with its gradient to the learnable β (Liu et al., ECCV 2020), and ReCU's sign with ApproxSign'
of the per-sample normalised input (Xu et al., ICCV 2021). Used by ``methods.activations``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import kernels, traceable
from .activation_grads import approx_sign_grad_mul, sample_mean_abs
from .functional import sign


class _ScaledSignFunction(torch.autograd.Function):
    """K·sign(x) in the forward (K = mean |x| per sample, detached); grad·B'(x) in the backward, K outside the
    estimator (BiBench's XNOR: ``(K·sign x).detach() − clamp(x).detach() + clamp(x)``)."""

    @staticmethod
    def forward(ctx, x: Tensor, method: "XnorSign") -> Tensor:
        ctx.method = method
        ctx.save_for_backward(x)
        return sign(x).mul_(sample_mean_abs(x))

    @staticmethod
    def backward(ctx, grad: Tensor):
        return ctx.method.grad_dB(grad, ctx.saved_tensors[0]), None


def scaled_sign(x: Tensor, method: "XnorSign") -> Tensor:
    if torch.compiler.is_compiling():  # one graph (methods.traceable)
        return traceable.scaled_sign(x, method)
    return _ScaledSignFunction.apply(x, method)


class _RSignFunction(torch.autograd.Function):
    """sign(x + β) in the forward; grad·ApproxSign'(x + β) to x and Σ grad·ApproxSign'(x + β) to β (summed
    over the dimensions β is broadcast along). The kernels compute sign(x − b) and ∂/∂b, called with b = −β
    (∂L/∂β = −∂L/∂b). With ``methods.kernels``: x and b are saved and x − b is recomputed inside the one-pass
    backward; eager: the sum x + β is saved."""

    @staticmethod
    def forward(ctx, x: Tensor, beta: Tensor) -> Tensor:
        b = beta.to(x.dtype).neg()
        ctx.beta_shape, ctx.beta_dtype = beta.shape, beta.dtype
        fused = kernels.rsign_forward(x, b)
        ctx.fused = fused is not None
        if ctx.fused:
            ctx.save_for_backward(x, b)
            return fused
        d = x - b
        ctx.save_for_backward(d)
        return sign(d)

    @staticmethod
    def backward(ctx, grad: Tensor):
        fused = kernels.rsign_backward(grad, *ctx.saved_tensors) if ctx.fused else None
        if fused is not None:
            h, grad_beta = fused
        else:
            d = ctx.saved_tensors[0] - ctx.saved_tensors[1] if ctx.fused else ctx.saved_tensors[0]
            h = approx_sign_grad_mul(grad, d)
            grad_beta = h.sum_to_size(ctx.beta_shape).neg() if ctx.needs_input_grad[1] else None
        return h, grad_beta.neg().to(ctx.beta_dtype) if ctx.needs_input_grad[1] else None


def rsign(x: Tensor, beta: Tensor) -> Tensor:
    if torch.compiler.is_compiling():  # one graph (methods.traceable)
        return traceable.rsign(x, beta)
    return _RSignFunction.apply(x, beta)


class _ReCUSignFunction(torch.autograd.Function):
    """sign(x) in the forward (= sign(x̂), x̂ = x/s, s = sqrt(Var(x) + 1e-5) per sample, Var unbiased over all
    but the first dimension); the backward is that of ApproxSign at x̂ followed by the normalisation's own:
    with h = grad·ApproxSign'(x̂) and M the elements per sample,
    ∂L/∂x = h/s − (Σ h·x)/(s³(M − 1))·(x − mean x), what autograd gives for x / sqrt(x.var() + 1e-5).
    In one pass per sample (``methods.kernels.recu_forward/backward``) or eagerly as h/s = grad·max(0, 2/s − 2|x|/s²)
    and Σ h·x/s³ = Σ (h/s)·x/s²; either way the saved tensors are x and the per-sample mean and s."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        fused = kernels.recu_forward(x)
        if fused is not None:
            out, mean, s = fused
        else:
            dims = tuple(range(1, x.dim()))
            mean = x.mean(dim=dims, keepdim=True)
            s = torch.linalg.vector_norm(x - mean, dim=dims, keepdim=True).square_().div_(x[0].numel() - 1)
            s = s.add_(1e-5).sqrt_()
            out = sign(x)
        ctx.save_for_backward(x, mean, s)  # x − mean is recomputed in the backward: x is the only full-size one
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, mean, s = ctx.saved_tensors
        fused = kernels.recu_backward(grad, x, mean, s)
        if fused is not None:
            return fused
        dims = tuple(range(1, x.dim()))
        inv = s.reciprocal()
        inv_sq = inv.square()
        h_over_s = x.abs().mul_(inv_sq * -2.0).add_(inv.mul_(2.0)).clamp_min_(0.0).mul_(grad)
        scratch = torch.mul(h_over_s, x)
        c = scratch.sum(dim=dims, keepdim=True).mul_(inv_sq.div_(x[0].numel() - 1))
        return h_over_s.addcmul_(torch.sub(x, mean, out=scratch), c, value=-1.0)


def recu_sign(x: Tensor) -> Tensor:
    if torch.compiler.is_compiling():  # one graph (methods.traceable)
        return traceable.recu_sign(x)
    return _ReCUSignFunction.apply(x)
