"""The eight methods of BiBench (Qin et al., ICML 2023) that binarize weights *and* activations (W1A1).

Each is a weight quantizer (``methods.Method``: forward, backward, export α·sign) plus an activation
quantizer (``activation``, a key of ``methods.activations``) that ``methods.binarize`` applies to the inputs
of the binarized layers through a forward pre-hook. Notation: w the latent weight, α the per-output-channel
mean |w| (detached), x a layer input, sign(0) = +1. "B'(w)" is the factor the gradient reaching the binary
weight is multiplied by before it reaches w (on the raw latent, as the official codes clamp the raw w).

Each follows BiBench's layer (Qin et al., ICML 2023; ``bibench/models/layers/<file>.py``, the ``…Conv2d``
class) by default; "clamp STE" is the reference's ``(q).detach() − clamp(w).detach() + clamp(w)``, so a scale
α applied to q is *not* in the latent's gradient (FDA multiplies after its estimator, so its gradient has α).

| method | weights: forward / backward | activations: forward / backward | BiBench file |
|---|---|---|---|
| ``bnn-w1a1`` | sign(w) / 1[|w| ≤ 1] | sign / 1[|x| ≤ 1] | ``bnn.py`` |
| ``xnor`` | α·sign(w) / 1[|w| ≤ 1] | K·sign(x), K = mean |x| per sample / 1[|x| ≤ 1] | ``xnor.py`` |
| ``dorefa`` | α·sign(w) / 1[|w| ≤ 1] | sign / 1[|x| ≤ 1] | ``dorefa.py`` |
| ``bireal`` | α·sign(w) / 1[|w| ≤ 1] | sign / max(0, 2 − 2|x|) | ``bireal.py`` |
| ``xnor++`` | o·sign(w) / 1[|w| ≤ 1], output × h ⊗ w | sign / 1[|x| ≤ 1] | ``xnorplusplus.py`` |
| ``reactnet`` | α·sign(w) / 1[|w| ≤ 1] | sign(x + β), β learnable / ApproxSign'(x + β) | ``react.py`` |
| ``recu`` | a·sign(clamp(ŵ, ±Q_τ)), a learnable / STE | sign / ApproxSign'(x/σ) | ``recu.py`` |
| ``fda`` | α·(sign(w) + λ·e(w)) / α·(FDA'(w) + λ·e'(w)) | sign + λ·e(x) / FDA'(x) + λ·e'(x) | ``fda.py`` |

The original codes' forms stay available: ``xnor`` ``form="xnor-net"`` (``allenai/XNOR-Net``), ``dorefa``
``form="tensorpack"`` (tensorpack DoReFa-Net), ``bnn-w1a1`` ``clip=1`` (BinaryNet.pytorch), ``fda``
``noise=false``. sign(0) = +1 everywhere (BiBench's ``torch.sign`` gives 0).

Architectural pieces (Bi-Real's real-valued shortcut around each binary convolution, ReActNet's RPReLU) are
model variants, not part of the methods: ``fmnist-cnn-bireal`` and ``fmnist-cnn-react`` (``models.small``),
``resnet20/32/44/56-bireal``/``-react`` and ``resnet18-bireal``/``-react`` (``models.bireal``).
Any weight method gains an activation quantizer by name, without a class: ``"bnn+++ste-sign-act"``
(``methods.compose``).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from . import kernels
from .activations import (clip_grad_mul, fourier_sign_grad, fourier_sign_grad_mul, noise_parameters, noise_residual,
                          noise_strength)
from .base import Bound, Method, non_negative, one_of, positive, register_method
from .builtin import BNN
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


@torch.compiler.disable
def _sign_grad(w: Tensor, method) -> Tensor:
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


@torch.compiler.disable
def _scaled_sign_grad(w: Tensor, method) -> Tensor:
    return _ScaledSignGrad.apply(w, method)


def channel_mean_abs(w: Tensor) -> Tensor:
    """mean |w| per output channel (dim 0), shaped to broadcast against w."""
    dims = tuple(range(1, w.dim()))
    return w.detach().abs().mean(dim=dims, keepdim=True) if dims else w.detach().abs()


class _ScaledSign(Method):
    """θ = α·sign(w), α = ``alpha(w)`` detached (per output channel by default); backward grad·dW(w) on the
    raw latent (times α only for ``alpha_in_gradient``). The forward is exactly ``export(w)``."""

    default_scale = "channel"
    forward_is_export = True
    forward_formula = "α·sign(w)"
    backward_formula = "1[|w| ≤ 1]"
    # Does the reference multiply the output of its straight-through estimator by α (so the latent's gradient
    # carries α)? BiBench's clamp-STE layers do not: (α·sign w).detach() − clamp(w).detach() + clamp(w).
    alpha_in_gradient: ClassVar[bool] = False

    def F(self, x: Tensor) -> Tensor:
        return sign(x)

    def dW(self, w: Tensor) -> Tensor:
        """The backward factor on the raw latent (default: 1[|w| ≤ 1], the clamp(w, −1, 1) of the references)."""
        return clip_grad_mul(torch.ones_like(w), w, inclusive=True)

    def grad_dW(self, grad: Tensor, w: Tensor) -> Tensor:
        """grad · dW(w), fused (one pass for 1[|w| ≤ 1])."""
        return clip_grad_mul(grad, w, inclusive=True)

    def forward(self, w: Tensor) -> Tensor:
        return _scaled_sign_grad(w, self)

    def backward_factor(self, w: Tensor) -> Tensor:
        with torch.no_grad():
            return self.dW(w)


@register_method("bnn-w1a1")
class BNNW1A1(BNN):
    """BNN with binary activations (Hubara et al., NeurIPS 2016), as BiBench's ``BNNConv2d``
    (``bibench/models/layers/bnn.py``). Weights: sign(w), backward 1[|w| ≤ 1] (the clamp(w, −1, 1)
    straight-through estimator). Activations: sign(x), backward 1[|x| ≤ 1] (1 at |x| = 1, 0 beyond).
    BiBench's layer does not clip the latents (``clip = 0``); ``clip = 1`` gives BNN's own code
    (``itayhubara/BinaryNet.pytorch``), which clamps them to [−1, 1] after every step."""

    label, color, marker = "BNN-W1A1", "#17becf", "o"

    constants = {**BNN.constants, "clip": 0.0}
    activation = "ste-sign"


class _FormChoice:
    """A method with two published forms: ``form = "bibench"`` (the default: BiBench's layer) or the original
    paper's code (``other_form``); the activation quantizer is told which (``configure_activation``)."""

    other_form: ClassVar[str] = ""

    def validate(self) -> None:
        super().validate()
        self.configure_activation(self.act, self.form == "bibench")

    def configure_activation(self, act, bibench: bool) -> None:
        raise NotImplementedError


@register_method("xnor")
class XNOR(_FormChoice, _ScaledSign):
    """XNOR-Net (Rastegari, Ordonez, Redmon & Farhadi, ECCV 2016), as BiBench's ``XNORConv2d``
    (``bibench/models/layers/xnor.py``).
    Weights: θ = α·sign(w), α = mean |w| per output channel (detached); backward grad·1[|w| ≤ 1] (the clamp
    estimator, α outside it: no α in the latent's gradient). Activations (``form = "bibench"``):
    K·sign(x) with K = mean |x| per sample over (C, H, W), detached, backward 1[|x| ≤ 1].
    ``form = "xnor-net"``: the activations of XNOR-Net's code (``allenai/XNOR-Net``, ``BinActive``): sign(x)
    without K, backward 1[|x| < 1] (zero at |x| ≥ 1)."""

    label, color, marker = "XNOR", "#bcbd22", "s"

    constants = {"form": "bibench"}
    bounds = {"form": one_of("bibench", "xnor-net")}
    activation = "xnor-sign"

    def configure_activation(self, act, bibench: bool) -> None:
        act.scaled = bibench


@register_method("dorefa")
class DoReFa(_FormChoice, _ScaledSign):
    """DoReFa-Net with 1-bit weights and activations (Zhou et al., 2016), as BiBench's ``DoReFaConv2d``
    (``bibench/models/layers/dorefa.py``). ``form = "bibench"`` (default): weights θ = α·sign(w), α = mean |w|
    per output channel (detached), backward 1[|w| ≤ 1] (clamp estimator, no α in the gradient); activations
    sign(x) with backward 1[|x| ≤ 1].
    ``form = "tensorpack"``: DoReFa's own code (tensorpack ``examples/DoReFa-Net``): θ = E|w|·sign(w), E the
    mean over the whole tensor (``scale = "tensor"``), backward 1 (straight through); activations
    round(clip(x, 0, 1)) ∈ {0, 1} with backward 1[0 ≤ x ≤ 1]."""

    label, color, marker = "DoReFa", "#7f7f7f", "^"

    constants = {"form": "bibench"}
    bounds = {"form": one_of("bibench", "tensorpack")}
    activation = "dorefa"

    def __init__(self, **overrides):
        if overrides.get("form") == "tensorpack":
            overrides.setdefault("scale", "tensor")
        super().__init__(**overrides)
        self.identity_backward = self.form == "tensorpack"

    def configure_activation(self, act, bibench: bool) -> None:
        act.unipolar = not bibench

    def dW(self, w: Tensor) -> Tensor:
        return torch.ones_like(w) if self.identity_backward else super().dW(w)

    def grad_dW(self, grad: Tensor, w: Tensor) -> Tensor:
        return grad if self.identity_backward else super().grad_dW(grad, w)


@register_method("bireal")
class BiReal(_ScaledSign):
    """Bi-Real Net (Liu, Wu, Luo, Yang, Liu & Cheng, ECCV 2018), as BiBench's ``BiRealConv2d``
    (``bibench/models/layers/bireal.py``; the same as ``liuzechun/Bi-Real-net``). Weights: magnitude-aware
    sign θ = α·sign(w), α = mean |w| per output channel (detached), backward 1[|w| ≤ 1] (the clamp estimator,
    α outside it). Activations: sign(x) with the piecewise quadratic ApproxSign backward B'(x) = 2 − 2|x|
    for |x| < 1, else 0. The real-valued shortcut around each binary convolution is the model's:
    ``fmnist-cnn-bireal``, ``resnet20-bireal``."""

    label, color, marker = "Bi-Real", "#393b79", "v"

    activation = "approx-sign"


@register_method("xnor++")
class XNORPlusPlus(_ScaledSign):
    """XNOR-Net++ (Bulat & Tzimiropoulos, BMVC 2019), as BiBench's ``XNORPlusPlusConv2d``
    (``bibench/models/layers/xnorplusplus.py``). The layer computes (sign(x) ⊛ sign(w))·Γ with
    Γ = o ⊗ h ⊗ w factorised over (output channel, output row, output column), each factor learnable and
    initialised to 1 (the paper's case 2). Here o multiplies the weight (``gamma``, one per output channel:
    the same product, since the convolution is linear in its weight) and h, w the layer's output
    (``<layer>.input_quantizer.h_scale``/``w_scale``, 2000 entries each as BiBench, the first H/W used).
    Weights: sign(w), backward 1[|w| ≤ 1]; ∂L/∂o = Σ grad·sign(w). Activations: sign(x), backward
    1[|x| ≤ 1]."""

    label, color, marker = "XNOR++", "#8c6d31", "D"

    activation = "xnor++-sign"
    forward_formula = "o·sign(w) (h, w on the output)"

    def weight_parameters(self, w: Tensor) -> dict[str, Tensor]:
        return {"gamma": torch.ones((w.shape[0],) + (1,) * (w.dim() - 1))}

    def quantize(self, w: Tensor, gamma: Tensor) -> Tensor:
        return gamma.to(w.dtype) * _sign_grad(w, self)

    def export_learned(self, w: Tensor, gamma: Tensor) -> Tensor:
        with torch.no_grad():
            return gamma.detach().to(w.dtype) * sign(w)

    def export_parts(self, w: Tensor, gamma: Tensor):
        return w >= 0, gamma.detach()


@register_method("reactnet")
class ReActNet(_ScaledSign):
    """ReActNet (Liu, Shen, Savvides & Cheng, ECCV 2020), as BiBench's ``ReActConv2d``
    (``bibench/models/layers/react.py``). Weights as Bi-Real: α·sign(w), backward 1[|w| ≤ 1] (no α in the
    gradient). Activations: RSign, sign(x + β) with β a learnable threshold per input channel initialised to 0
    (``<layer>.input_quantizer.beta``, BiBench's ``channel_threshold``), backward ApproxSign'(x + β). RPReLU
    and the shortcuts are the model's: ``fmnist-cnn-react``, ``resnet20-react``, ``resnet18-react``."""

    label, color, marker = "ReActNet", "#843c39", "P"

    activation = "rsign"


@register_method("recu")
class ReCU(Method):
    """ReCU (Xu, Lin, Zhang, Ding, Qian & Ji, "ReCU: Reviving the Dead Weights in Binary Neural Networks",
    ICCV 2021; code ``z-hXu/ReCU``, ``modules/binarized_modules.py``; BiBench's ``ReCUConv2d``,
    ``bibench/models/layers/recu.py``, is the same layer).

    Weights: standardise per output channel, ŵ = (w − mean w)/(σ(w)/(2√2)) with σ² the unbiased variance
    + 1e-5; rectified clamp at the τ-quantile of a Laplace fit, Q_τ = −E|ŵ|·ln(2 − 2τ) (E over the whole
    tensor, detached), w̃ = clamp(ŵ, −Q_τ, Q_τ); θ = a·sign(w̃) with a a learnable scale per output channel
    (the code multiplies the output by it; drawn from U[0, 1) as the code and BiBench's ``ReCUConv2d``).
    Backward: straight through sign (factor 1), then the exact derivatives of the clamp (0 beyond ±Q_τ) and
    of the standardisation. τ follows the code's exponential schedule τ(t) = A·e^t + B, A = (τ_end −
    τ_start)/(e − 1), B = τ_start − A, from 0.85 to 0.99 (t = epoch/epochs there, the step's progress here).
    Activations: sign(x), backward ApproxSign'(x/σ(x)) in training (``recu-sign``). Deployed: a·sign(ŵ)
    (bits from sign(w − mean w), not sign(w)).
    """

    label, color, marker = "ReCU", "#637939", "X"

    default_scale = "none"
    schedules = {"tau": (0.85, 0.99)}
    bounds = {"tau": Bound(low=0.5, high=1.0, low_inclusive=False, high_inclusive=False)}
    forward_is_export = True
    activation = "recu-sign"
    forward_formula = "a·sign(clamp(ŵ, ±Q_τ))"
    backward_formula = "STE · clamp' · standardise'"

    def set_progress(self, t: float) -> None:
        super().set_progress(t)
        start, end = self._ranges["tau"]
        a = (end - start) / (math.e - 1.0)
        self.tau = a * math.exp(float(t)) + (start - a)

    def F(self, x: Tensor) -> Tensor:
        return sign(x)

    @staticmethod
    def standardise(w: Tensor) -> Tensor:
        dims = tuple(range(1, w.dim()))
        w0 = w - w.mean(dim=dims, keepdim=True)
        return w0 / (torch.sqrt(w0.var(dim=dims, keepdim=True) + 1e-5) / 2.0 / math.sqrt(2.0))

    def clamp_threshold(self, w1: Tensor) -> Tensor:
        """Q_τ as a 0-dim tensor (no host sync on a GPU)."""
        return -w1.detach().abs().mean() * math.log(2.0 - 2.0 * self.tau)

    def rectified(self, w: Tensor) -> Tensor:
        w1 = self.standardise(w)
        q = self.clamp_threshold(w1)
        return torch.clamp(w1, -q, q)

    def weight_parameters(self, w: Tensor) -> dict[str, Tensor]:
        """a ~ U[0, 1) per output channel, drawn from torch's generator (``torch.rand``, as the code's
        ``nn.Parameter(torch.rand(C_out, 1, 1))``)."""
        return {"scale_a": torch.rand((w.shape[0],) + (1,) * (w.dim() - 1))}

    def dW(self, w: Tensor) -> Tensor:
        return torch.ones_like(w)

    def grad_dW(self, grad: Tensor, w: Tensor) -> Tensor:
        return grad

    def quantize(self, w: Tensor, scale_a: Tensor) -> Tensor:
        if w.dim() < 2:
            return scale_a.to(w.dtype) * _sign_grad(self.rectified(w), self)
        return _recu_weight(w, scale_a, self)

    def export_learned(self, w: Tensor, scale_a: Tensor) -> Tensor:
        with torch.no_grad():
            return scale_a.detach().to(w.dtype) * sign(self.standardise(w))

    def export_parts(self, w: Tensor, scale_a: Tensor):
        with torch.no_grad():
            return self.standardise(w) >= 0, scale_a.detach()

    def forward(self, w: Tensor) -> Tensor:  # without a layer's learned scale: a = mean |w| per channel
        if w.dim() < 2:
            return channel_mean_abs(w) * _sign_grad(self.rectified(w), self)
        return _recu_weight(w, channel_mean_abs(w), self)

    def export(self, w: Tensor) -> Tensor:
        with torch.no_grad():
            return channel_mean_abs(w) * sign(self.standardise(w))


class _ReCUWeight(torch.autograd.Function):
    """ReCU's θ = a·sign(clamp(ŵ, −Q_τ, Q_τ)) and its backward in one node: what autograd gives for
    ``a * _sign_grad(rectified(w))``, written out. With ŵ = w0/r, w0 = w − mean w, r = R/(2√2),
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


@torch.compiler.disable
def _recu_weight(w: Tensor, a: Tensor, method: "ReCU") -> Tensor:
    return _ReCUWeight.apply(w, a, method)


@register_method("fda")
class FDA(_ScaledSign):
    """FDA, Fourier frequency-domain approximation (Xu, Han, Wang, Xu, Xu & Wang, "Learning Frequency Domain
    Approximation for Binary Neural Networks", NeurIPS 2021; code ``xuyixing0707/FDA-BNN``), as BiBench's
    ``FDAConv2d`` (``bibench/models/layers/fda.py``, ``noise_adapt=True``).

    sign is the square wave (4/π)·Σ_{i≥0} sin((2i+1)ωx)/(2i+1); its first n + 1 terms give the backward
    B'(x) = (4ω/π)·Σ_{i=0}^{n} cos((2i+1)ωx) for |x| ≤ 1, 0 beyond, for weights and activations alike.
    ω = 0.1; n goes from 9 to 18 over training, rounded down (the code's n = 9 + ⌊9·epoch/epochs⌋).

    Noise adaptation (``noise = true``, the default): a learned residual is added to the binary weight before
    the scale, θ = α·(sign(w) + λ·e(w)), α = mean |w| per output channel (detached, applied after the
    estimator, so the latent's gradient is grad·α·(B'(w) + λ·e'(w))), with
    e(w) = W₂·relu(W₁·vec(w_c)) + 0.1·sin(w) per output channel c (W₁: d/64 × d, W₂: d × d/64, d the fan-in,
    ``<layer>.parametrizations.weight.0.noise_fc1``/``noise_fc2``, ``nn.Linear``'s default initialisation;
    none when d < 64); the activation quantizer does the same over the channels at each position
    (``fda-sign``). λ(t) = 0.05·(1 + cos(πt)) goes from 0.1 to 0 over training (the code steps it per epoch,
    λ = 0.05·(1 + cos(π(epoch + 1)/epochs)), reaching 0 in the last epoch), so the trained network is the plain
    binary one; the deployed model is α·sign(w) at every point. ``noise = false``: θ = α·sign(w).
    """

    label, color, marker = "FDA", "#7b4173", "*"

    schedules = {"n": (9.0, 18.0)}
    constants = {"omega": 0.1, "noise": True}
    bounds = {"n": non_negative(), "omega": positive()}
    activation = "fda-sign"
    alpha_in_gradient = True
    forward_is_export = False  # the F(w) model carries the noise residual while λ > 0
    forward_formula = "α·(sign(w) + λ·e(w))"
    backward_formula = "α·((4ω/π)Σ_{i≤n} cos((2i+1)ωw)·1[|w| ≤ 1] + λ·e'(w))"

    def validate(self) -> None:
        super().validate()
        self.act.noise = self.noise

    def set_progress(self, t: float) -> None:
        super().set_progress(t)
        self.noise_alpha = noise_strength(self.progress) if self.noise else 0.0

    def dW(self, w: Tensor) -> Tensor:
        return fourier_sign_grad(w, math.floor(self.n), self.omega)

    def grad_dW(self, grad: Tensor, w: Tensor) -> Tensor:
        return fourier_sign_grad_mul(grad, w, math.floor(self.n), self.omega)

    def weight_parameters(self, w: Tensor) -> dict[str, Tensor]:
        return noise_parameters(w[0].numel()) if self.noise else {}

    def forward(self, w: Tensor) -> Tensor:  # a layer without noise weights (fan-in < 64): e = 0.1·sin(w)
        return self.quantize(w)

    def quantize(self, w: Tensor, **noise: Tensor) -> Tensor:
        if not self.noise:
            return _scaled_sign_grad(w, self)
        binary = _sign_grad(w, self)
        flat = w.reshape(w.shape[0], -1)
        residual = noise_residual(flat, **noise).reshape(w.shape)
        return (binary + self.noise_alpha * residual) * channel_mean_abs(w)

    def export_learned(self, w: Tensor, **noise: Tensor) -> Tensor:
        return self.export(w)

    def export_parts(self, w: Tensor, **noise: Tensor):
        return w >= 0, self.alpha(w)

