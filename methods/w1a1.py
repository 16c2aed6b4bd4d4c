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

from .activation_grads import FourierNoise, noise_parameters, noise_residual
from .bounds import Bound, non_negative, one_of, positive
from .builtin import BNN
from .functional import clip_grad_mul, sign
from .method import Method, Traits
from .registry import register_method
from . import traceable
from .w1a1_functions import channel_mean_abs, recu_weight, scaled_sign_grad, sign_grad


class _ScaledSign(Method):
    """θ = α·sign(w), α = ``alpha(w)`` detached (per output channel by default); backward grad·dW(w) on the
    raw latent (times α only for ``alpha_in_gradient``). The forward is exactly ``export(w)``."""

    default_scale = "channel"
    traits = Traits(elementwise=False, forward_is_export=True)
    formulas = ("α·sign(w)", "1[|w| ≤ 1]", "—")
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

    def quantize(self, w: Tensor, **learned: Tensor) -> Tensor:
        return scaled_sign_grad(w, self)


@register_method("bnn-w1a1")
class BNNW1A1(BNN):
    """BNN with binary activations (Hubara et al., NeurIPS 2016), as BiBench's ``BNNConv2d``
    (``bibench/models/layers/bnn.py``). Weights: sign(w), backward 1[|w| ≤ 1] (the clamp(w, −1, 1)
    straight-through estimator). Activations: sign(x), backward 1[|x| ≤ 1] (1 at |x| = 1, 0 beyond).
    BiBench's layer does not clip the latents (``clip = 0``); ``clip = 1`` gives BNN's own code
    (``itayhubara/BinaryNet.pytorch``), which clamps them to [−1, 1] after every step."""

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

    activation = "xnor++-sign"
    traits = Traits(elementwise=False, forward_is_export=True, learned=True)
    formulas = ("o·sign(w) (h, w on the output)", "1[|w| ≤ 1]", "—")

    def weight_parameters(self, w: Tensor) -> dict[str, Tensor]:
        return {"gamma": torch.ones((w.shape[0],) + (1,) * (w.dim() - 1))}

    def quantize(self, w: Tensor, gamma: Tensor | None = None) -> Tensor:
        if gamma is None:  # a layer without its Γ: α·sign(w)
            return super().quantize(w)
        return gamma.to(w.dtype) * sign_grad(w, self)

    def export_parts(self, w: Tensor, gamma: Tensor | None = None):
        return (w >= 0, gamma.detach()) if gamma is not None else super().export_parts(w)


@register_method("reactnet")
class ReActNet(_ScaledSign):
    """ReActNet (Liu, Shen, Savvides & Cheng, ECCV 2020), as BiBench's ``ReActConv2d``
    (``bibench/models/layers/react.py``). Weights as Bi-Real: α·sign(w), backward 1[|w| ≤ 1] (no α in the
    gradient). Activations: RSign, sign(x + β) with β a learnable threshold per input channel initialised to 0
    (``<layer>.input_quantizer.beta``, BiBench's ``channel_threshold``), backward ApproxSign'(x + β). RPReLU
    and the shortcuts are the model's: ``fmnist-cnn-react``, ``resnet20-react``, ``resnet18-react``."""

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

    default_scale = "none"
    schedules = {"tau": (0.85, 0.99, "exponential")}  # τ(t) = A·e^t + B (``methods.schedule``)
    bounds = {"tau": Bound(low=0.5, high=1.0, low_inclusive=False, high_inclusive=False)}
    activation = "recu-sign"
    # learned a; deployed bits sign(w − mean w)
    traits = Traits(elementwise=False, forward_is_export=True, learned=True, custom_export=True)
    formulas = ("a·sign(clamp(ŵ, ±Q_τ))", "STE · clamp' · standardise'", "—")

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

    def quantize(self, w: Tensor, scale_a: Tensor | None = None) -> Tensor:
        """a·sign(w̃); without a layer's learned scale a = mean |w| per channel."""
        a = channel_mean_abs(w) if scale_a is None else scale_a.to(w.dtype)
        if w.dim() < 2:
            return a * sign_grad(self.rectified(w), self)
        return recu_weight(w, channel_mean_abs(w) if scale_a is None else scale_a, self)

    def export_parts(self, w: Tensor, scale_a: Tensor | None = None):
        """bits sign(w − mean w) (= sign(ŵ)), α = a (mean |w| per channel without a learned one)."""
        with torch.no_grad():
            return self.standardise(w) >= 0, channel_mean_abs(w) if scale_a is None else scale_a.detach()


@register_method("fda")
class FDA(FourierNoise, _ScaledSign):
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

    schedules = {"n": (9.0, 18.0)}
    constants = {"omega": 0.1, "noise": True}
    bounds = {"n": non_negative(), "omega": positive()}
    activation = "fda-sign"
    alpha_in_gradient = True
    # the F(w) model carries the noise residual while λ > 0; ⌊n⌋ and λ(t) are read from ``tensors`` when traced
    traits = Traits(elementwise=False, learned=True)
    formulas = ("α·(sign(w) + λ·e(w))", "α·((4ω/π)Σ_{i≤n} cos((2i+1)ωw)·1[|w| ≤ 1] + λ·e'(w))", "—")

    def validate(self) -> None:
        super().validate()
        self.act.noise = self.noise

    def dW(self, w: Tensor) -> Tensor:
        return self.fourier_grad(w)

    def grad_dW(self, grad: Tensor, w: Tensor) -> Tensor:
        return self.fourier_grad_mul(grad, w)

    def weight_parameters(self, w: Tensor) -> dict[str, Tensor]:
        return noise_parameters(w[0].numel()) if self.noise else {}

    def quantize(self, w: Tensor, **noise: Tensor) -> Tensor:  # no noise weights (fan-in < 64): e = 0.1·sin(w)
        if not self.noise:
            return scaled_sign_grad(w, self)
        binary = sign_grad(w, self)
        flat = w.reshape(w.shape[0], -1)
        residual = noise_residual(flat, **noise).reshape(w.shape)
        lam = traceable.noise_strength(self) if torch.compiler.is_compiling() else self.noise_alpha  # λ(t)
        return (binary + lam * residual) * channel_mean_abs(w)

    def export_parts(self, w: Tensor, **noise: Tensor):
        return w >= 0, self.alpha(w)

