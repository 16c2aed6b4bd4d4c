"""θ = α·F(w/α) in the forward and grad_w = grad_θ·B'(w/α) in the backward, α detached: the two paths.

Lu, Yu, Li & Partovi Nia, NeurIPS 2023 (PC++): the network computes with θ = α·F(w/α) and backprop multiplies
the gradient reaching θ by B'(w/α) before it reaches the latent w. ``scaled_quantize`` is the eager path (an
autograd.Function: B' only in the backward, nothing saved when B' ≡ 1); ``straight_through`` the path
``torch.compile`` traces (plain ops, the same bits). α = ``channel_scale(w, scale)``: the detached mean |w| per
output channel, per tensor, or 1 (``scale = "none"``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import traceable


def channel_scale(w: Tensor, scale: str) -> Tensor | float:
    """α: the detached mean of |w| per output channel (dim 0), per tensor, or 1 (``scale="none"``)."""
    if scale == "none":
        return 1.0
    with torch.no_grad():  # Σ|w| as abs().sum(): the same sum, several times faster than an ord-1 vector_norm on CPU
        if scale == "tensor" or w.dim() < 2:
            alpha = w.abs().sum().div_(w.numel())
        else:
            alpha = w.abs().sum(dim=tuple(range(1, w.dim())), keepdim=True).div_(w.numel() // w.shape[0])
        return alpha.clamp_min_(1e-12)


class _ForwardBackwardQuantizer(torch.autograd.Function):
    """θ = α·F(w/α) in the forward; grad_w = grad_θ · B'(w/α) in the backward (α given, detached).

    The eager path of ``Method.forward`` and of ``quantize_eagerly`` (α = ``channel_scale(w)``), and of the fused
    path (``methods.fused``: α spread over the flat tensor of every layer). It saves only x = w/α, and nothing
    at all when B' ≡ 1. ``alpha`` None means α = 1 (``scale = "none"``, every activation quantizer): the
    forward is F(w) itself, without a multiplication by 1. The backward is ``method.grad_dB(grad, x)``
    (grad · B'(x), which a method may fuse). Under ``torch.compile`` ``Method.forward`` goes through
    ``straight_through`` instead, which dynamo traces (it cannot trace this Function's backward, which reads
    the method's μ/ρ from ``ctx``).
    """

    @staticmethod
    def forward(ctx, w: Tensor, alpha: Tensor | None, method) -> Tensor:
        ctx.method = method
        if alpha is None:
            x = w
            out = method.F(w)
            if out is w:  # an identity F: the Function's output must be a tensor of its own
                out = w.clone()
        else:
            x = w / alpha
            out = alpha * method.F(x)
        if not method.identity_backward:
            ctx.save_for_backward(x)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        if ctx.method.identity_backward:
            return grad, None, None
        (x,) = ctx.saved_tensors
        return ctx.method.grad_dB(grad, x), None, None


def scaled_quantize(w: Tensor, alpha: Tensor | None, method) -> Tensor:
    """θ = α·F(w/α) with gradient grad·B'(w/α) for a given detached α (None: α = 1), eagerly, through the
    autograd.Function above."""
    return _ForwardBackwardQuantizer.apply(w, alpha, method)


def eager_alpha(w: Tensor, method) -> Tensor | None:
    """α for the Function: ``channel_scale`` of the latent, None for ``scale = "none"``."""
    return None if method.scale == "none" else channel_scale(w.detach(), method.scale)


def quantize_eagerly(w: Tensor, method) -> Tensor:
    """θ = α·F(w/α) with gradient grad·B'(w/α) through the autograd.Function above (the activation
    quantizers' path, ``methods.activations``); under ``torch.compile`` the same map in plain ops
    (``methods.traceable.quantize``, B' read from the method's schedule tensors)."""
    if torch.compiler.is_compiling():  # the traceable form (methods.traceable)
        return traceable.quantize(w, eager_alpha(w, method), method)
    return scaled_quantize(w, eager_alpha(w, method), method)


def straight_through(w: Tensor, method) -> Tensor:
    """θ = α·F(w/α) in the forward, grad_w = grad_θ · B'(w/α) in the backward (α detached), with plain ops.

    The value q = α·F(w/α) and the factor d = B'(w/α) are computed on ``w.detach()`` (no graph), and
    θ = q + (w − w.detach())·d: w − w.detach() is exactly 0 for finite w, so θ is q bit for bit (up to the
    sign of a zero), and its gradient with respect to w is grad_θ·d, the product the Function computes. When
    B' ≡ 1 (``identity_backward``) θ = q + (w − w.detach()) and grad_w is grad_θ itself. No autograd.Function
    and no Python float of the schedule: ``torch.compile`` traces it into the model's graph (forward and
    backward), and a change of μ/ρ (an in-place write to ``method.tensors``) neither breaks it nor recompiles.
    Without grad (evaluation) B' is not computed at all.
    """
    wd = w.detach()
    alpha = channel_scale(wd, method.scale)
    x = wd / alpha if method.scale != "none" else wd
    q = alpha * method.F(x)
    if not (w.requires_grad and torch.is_grad_enabled()):
        return q
    if method.identity_backward:
        return q + (w - wd)
    return q + (w - wd) * method.dB(x)
