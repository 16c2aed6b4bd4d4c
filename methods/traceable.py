"""Traceable forms of the W1A1 autograd Functions: what ``torch.compile`` captures in one graph.

Why: the W1A1 quantizers (``methods.w1a1_functions``, ``methods.activation_functions``,
``methods.activations``) compute their forward and backward in ``torch.autograd.Function``s that call the
one-pass C kernels (``methods.kernels``) and read the schedule (FDA's n and λ, ReCU's τ) as Python floats
from ``ctx``/``self``. Dynamo cannot trace such a backward, and a
float of the schedule read in a traced forward is a guard that fails (a recompile) each time it moves. So
each Function's wrapper, under ``torch.compiler.is_compiling()`` only, calls the function here of the same
name instead: plain differentiable torch ops, no kernel, and every value that moves in training read from the
method's 0-d schedule tensors (``method.tensors``: ``progress`` and the scheduled parameters, written in place
by ``set_progress_tensors``), so a new value is a new input of the same graph. Eagerly (and so every
eager result) nothing changes: the Functions run as before.

The straight-through form: for a value q(x) and a backward factor d(x), both computed on ``x.detach()``,
``q + (x − x.detach())·d`` equals q in the forward (x − x.detach() is exactly 0 for finite x) and gives
∂L/∂x = grad·d in the backward; where the Function's backward is a true derivative (ReCU's normalisation,
RSign's β, XNOR-Net++'s h ⊗ w, FDA's noise residual), the same map is written with autograd ops. Each
equals its Function forward and backward up to float rounding (``tests/test_traceable.py``, float64, 1e-12).
sign(0) = +1 throughout (``methods.functional.sign``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .activation_grads import approx_sign_grad, noise_residual
from .functional import sign


def straight(x: Tensor, q: Tensor, factor: Tensor | None) -> Tensor:
    """q in the forward, grad·factor to x in the backward (factor None: grad itself, B' ≡ 1)."""
    if not (x.requires_grad and torch.is_grad_enabled()):
        return q
    delta = x - x.detach()
    return q + (delta if factor is None else delta * factor)


def clip_factor(x: Tensor, inclusive: bool = True) -> Tensor:
    """1[|x| ≤ 1] (``inclusive``) or 1[|x| < 1], as x's dtype: the clamp estimator's B'."""
    a = x.abs()
    return (a.le(1.0) if inclusive else a.lt(1.0)).to(x.dtype)


def is_fourier(method) -> bool:
    """FDA's quantizers (weights ``fda``, activations ``fda-sign``): the ones with the Fourier series' n and ω."""
    return "n" in method._ranges and hasattr(method, "omega")


def fourier_factor(x: Tensor, method) -> Tensor:
    """FDA's B'(x) = (4ω/π)·Σ_{i=0}^{N−1} cos((2i+1)ωx)·1[|x| ≤ 1], N = ⌊n⌋ + 1 read from ``method.tensors.n``
    (Xu et al., NeurIPS 2021). For ω ≤ π/2 the closed form (2ω/π)·sin(2Nθ)/sin θ, θ = ω·max(|x|, 1e-20) (the
    telescoping sum; its limit at 0 is N, B' is even), as the eager float64 path; beyond, the direct sum over
    the schedule's largest N with the terms i ≥ N weighted 0. Half precision is evaluated in float32."""
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    omega = float(method.omega)
    terms = torch.floor(method.tensors.n) + 1.0
    if omega <= math.pi / 2:
        a = xf.abs().clamp_min(1e-20)
        factor = torch.sin(a * (2.0 * omega * terms)) / torch.sin(a * omega) * (2.0 * omega / math.pi)
    else:
        top = int(math.floor(max(method._ranges["n"]))) + 1
        factor = sum(torch.cos((2 * i + 1) * omega * xf) * (terms > i) for i in range(top)) * (4.0 * omega / math.pi)
    return (factor * clip_factor(xf)).to(x.dtype)


def backward_factor(method, x: Tensor) -> Tensor:
    """The method's B'(x) with the schedule read from its tensors (FDA's Fourier series, else ``method.dB``,
    which reads the tensors already)."""
    return fourier_factor(x, method) if is_fourier(method) else method.dB(x)


def weight_factor(method, w: Tensor) -> Tensor:
    """The W1A1 weight methods' factor on the raw latent, ``method.dW`` (FDA's with its tensor n)."""
    return fourier_factor(w, method) if is_fourier(method) else method.dW(w)


def noise_strength(method) -> Tensor:
    """FDA's noise weight λ(t) = 0.05·(1 + cos(πt)) of ``method.tensors.progress`` (0 with ``noise`` off)."""
    lam = 0.05 * (1.0 + torch.cos(math.pi * method.tensors.progress))
    return lam if method.noise else lam * 0.0


# -- methods.autograd ----------------------------------------------------------------------------------------

def quantize(w: Tensor, alpha: Tensor | None, method) -> Tensor:
    """``quantize_eagerly``: θ = α·F(w/α), grad·B'(w/α), α given and detached (None: α = 1, F(w) itself)."""
    wd = w.detach()
    x = wd if alpha is None else wd / alpha
    q = method.F(x) if alpha is None else alpha * method.F(x)
    return straight(w, q, None if method.identity_backward else backward_factor(method, x))


# -- methods.w1a1_functions ----------------------------------------------------------------------------------

def sign_grad(w: Tensor, method) -> Tensor:
    """``_sign_grad``: sign(w), grad·dW(w) (grad itself for ``identity_backward``)."""
    wd = w.detach()
    return straight(w, sign(wd), None if method.identity_backward else weight_factor(method, wd))


def scaled_sign_grad(w: Tensor, method) -> Tensor:
    """``_scaled_sign_grad``: α·sign(w), α = ``method.alpha(w)`` detached; grad·dW(w), or grad·α·dW(w) when
    ``alpha_in_gradient`` (FDA)."""
    wd = w.detach()
    alpha = method.alpha(wd)
    factor = None if method.identity_backward else weight_factor(method, wd)
    if method.alpha_in_gradient:
        factor = alpha if factor is None else factor * alpha
        if not isinstance(factor, Tensor):
            factor = torch.full_like(wd, factor)
    return straight(w, sign(wd) * alpha, factor)


def recu_weight(w: Tensor, a: Tensor, method) -> Tensor:
    """``_recu_weight``: a·sign(w̃), w̃ = clamp(ŵ, −Q_τ, Q_τ), ŵ = (w − mean w)/(σ/(2√2)), σ² the unbiased
    variance per output channel + 1e-5, Q_τ = −E|ŵ|·ln(2 − 2τ) (detached, τ from ``method.tensors.tau``);
    straight through sign, autograd through the clamp (0 beyond ±Q_τ) and the standardisation; ∂L/∂a =
    Σ grad·sign(w̃) (Xu et al., ICCV 2021)."""
    dims = tuple(range(1, w.dim()))
    w0 = w - w.mean(dim=dims, keepdim=True)
    m = w0.numel() // w0.shape[0]
    r = (w0.square().sum(dim=dims, keepdim=True) / (m - 1) + 1e-5).sqrt() / (2.0 * math.sqrt(2.0))
    w1 = w0 / r
    q = -w1.detach().abs().mean() * torch.log(2.0 - 2.0 * method.tensors.tau).to(w.dtype)
    w2 = torch.clamp(w1, -q, q)
    return a.to(w.dtype) * straight(w2, sign(w1.detach()), None)


# -- methods.activation_functions, methods.activations -------------------------------------------------------

def scaled_sign(x: Tensor, method) -> Tensor:
    """``_scaled_sign`` (XNOR): K·sign(x), K = mean |x| per sample (detached); grad·1[|x| ≤ 1] (K outside)."""
    xd = x.detach()
    k = xd.abs().mean(dim=tuple(range(1, x.dim())), keepdim=True)
    return straight(x, sign(xd) * k, backward_factor(method, xd))


def rsign(x: Tensor, beta: Tensor) -> Tensor:
    """``_rsign`` (ReActNet): sign(x + β); grad·ApproxSign'(x + β) to x and its sum over the broadcast
    dimensions to β."""
    d = x + beta.to(x.dtype)
    dd = d.detach()
    return straight(d, sign(dd), approx_sign_grad(dd))


def recu_sign(x: Tensor) -> Tensor:
    """``_recu_sign``: sign(x) (= sign(x̂)); backward ApproxSign'(x̂)·∂x̂/∂x, x̂ = x/sqrt(Var(x) + 1e-5) per
    sample (unbiased over all but the first dimension), the normalisation differentiated by autograd."""
    dims = tuple(range(1, x.dim()))
    xh = x / (x.var(dim=dims, keepdim=True) + 1e-5).sqrt()
    return straight(xh, sign(x.detach()), approx_sign_grad(xh.detach()))


def fda_noisy_sign(x: Tensor, method) -> Tensor:
    """``_fda_noisy_sign``: sign(x) + c·sin(x), c = 0.1·λ(t); backward grad·B'(x) + grad·c·cos(x), B' FDA's
    Fourier series."""
    xd = x.detach()
    c = (0.1 * noise_strength(method)).to(x.dtype)
    return straight(x, sign(xd), fourier_factor(xd, method)) + torch.sin(x) * c


def fda_sign(x: Tensor, method, **noise: Tensor) -> Tensor:
    """``FDASign.apply`` in training: sign(x) + λ·e(x) (``noise`` on, x at least 2-d), e(x) =
    W₂·relu(W₁·x_p) + 0.1·sin(x) over the channels at each position p (0.1·sin(x) alone without the hidden
    layers); else sign(x); backward FDA's B'(x) plus autograd's λ·e'(x)."""
    if not method.noise or x.dim() < 2:
        return quantize(x, None, method)
    if not noise:
        return fda_noisy_sign(x, method)
    lam = noise_strength(method).to(x.dtype)
    xd = x.detach()
    residual = noise_residual(x.movedim(1, -1), **noise).movedim(-1, 1)
    return straight(x, sign(xd), fourier_factor(xd, method)) + residual * lam
