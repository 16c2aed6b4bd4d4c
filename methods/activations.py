"""Activation quantizers: the (F, B') pair a method applies to the *inputs* of its binarized layers (W1A1).

larq's split of a binarized layer into a ``kernel_quantizer`` and an ``input_quantizer`` is the model: a
weight method (``methods.Method``) quantizes the kernel, and a method that binarizes activations as well
names an activation quantizer in its ``activation`` attribute. An activation quantizer is itself a
``Method`` subclass (same ``schedules``/``constants``/``bounds`` machinery, same F and B' on x) acting on the
raw input (α = 1): the network computes with F(x) and backprop multiplies the gradient by B'(x). It may own
per-layer learnable parameters (ReActNet's threshold β): ``layer_parameters(layer)`` gives their initial
values, ``methods.binarize`` registers them as ``nn.Parameter``s of an ``InputQuantizer`` module attached to
the layer (``<layer>.input_quantizer.<name>``), so they are in ``state_dict()``, in checkpoints, in the
optimizer and in the packed export. ``deploy(x, **learned)`` is the deployed form (no gradient).

Registered here (``list_activations()``):

* ``ste-sign``  F = sign(x), B'(x) = 1[|x| ≤ 1] (BNN's clipped straight-through estimator, Hubara et al. 2016);
* ``xnor-sign`` F = K·sign(x), K = mean |x| per sample (detached), B'(x) = 1[|x| ≤ 1] (BiBench's XNOR layer);
  unscaled, F = sign(x), B'(x) = 1[|x| < 1] (XNOR-Net's ``BinActive``);
* ``xnor++-sign`` ``ste-sign`` on the input, and learnable factors h ⊗ w on the output's rows and columns
  (XNOR-Net++'s factorised Γ);
* ``approx-sign`` F = sign(x), B'(x) = max(0, 2 − 2|x|) (Bi-Real Net's piecewise-quadratic ApproxSign);
* ``rsign``     F = sign(x + β), B' = ApproxSign'(x + β), β a learnable threshold per input channel
  (ReActNet's RSign; ∂/∂β = B');
* ``recu-sign`` F = sign(x), B' = ApproxSign' of x / sqrt(Var(x) + 1e-5) (per sample) in training, as ReCU's
  official code (``z-hXu/ReCU``) normalises the activations before binarizing them (sign is unchanged);
* ``dorefa``    F = sign(x), B'(x) = 1[|x| ≤ 1] (BiBench's DoReFa layer); unipolar, F = round(clip(x, 0, 1))
  ∈ {0, 1}, B'(x) = 1[0 ≤ x ≤ 1] (DoReFa-Net's own 1-bit activation);
* ``fda-sign``  F = sign(x), B'(x) = (4ω/π)·Σ_{i=0}^{n} cos((2i+1)ωx) for |x| ≤ 1, else 0 (FDA's truncated
  Fourier series of the square wave's derivative; ω = 0.1, n = ⌊9 → 18⌋ over training, as the official code
  ``xuyixing0707/FDA-BNN``), plus FDA's noise-adaptation residual in training.

sign(0) = +1 everywhere (``methods.functional.sign``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from . import kernels, traceable
from .activation_base import ActivationQuantizer
from .activation_functions import recu_sign, rsign, scaled_sign
from .activation_grads import (FourierNoise, approx_sign_grad, approx_sign_grad_mul, fourier_series_coefficients,
                               fourier_sign_grad, fourier_sign_grad_mul, noise_parameters, noise_residual,
                               sample_mean_abs, ste_clip_grad)  # noqa: F401  (fourier_sign_grad: re-exported)
from .autograd import quantize_eagerly
from .bounds import non_negative, positive
from .functional import clip_grad_mul, just_above, sign
from .registry import get_activation_class, register_activation

def create_activation(name: str, **params) -> ActivationQuantizer:
    return get_activation_class(name)(**params)


class _SignAct(ActivationQuantizer):
    formulas = ("sign(x)", "B'(x)", "—")

    def F(self, x: Tensor) -> Tensor:
        return sign(x)


@register_activation("ste-sign")
class SteSign(_SignAct):
    """F(x) = sign(x), B'(x) = 1[|x| ≤ 1]: BNN's clipped straight-through estimator (Hubara et al. 2016)."""

    formulas = ("sign(x)", "1[|x| ≤ 1]", "—")

    def B(self, x: Tensor) -> Tensor:
        return torch.clamp(x, -1.0, 1.0)

    def dB(self, x: Tensor) -> Tensor:
        return ste_clip_grad(x)

    def grad_dB(self, grad: Tensor, x: Tensor) -> Tensor:
        return clip_grad_mul(grad, x, inclusive=True)


@register_activation("xnor-sign")
class XnorSign(_SignAct):
    """XNOR-Net's activation. ``scaled`` (BiBench's ``XNORConv2d``, the default): F(x) = K·sign(x) with
    K = mean |x| per sample over all but the first dimension (detached), B'(x) = 1[|x| ≤ 1] (the clamp
    estimator; K stays outside it). Unscaled (``xnor`` with ``form = "xnor-net"``: XNOR-Net's code
    ``allenai/XNOR-Net``, ``BinActive``): F(x) = sign(x), B'(x) = 1[|x| < 1] (zero where |x| ≥ 1)."""

    formulas = ("K·sign(x) (form xnor-net: sign(x))", "1[|x| ≤ 1] (form xnor-net: 1[|x| < 1])", "—")
    scaled = True

    def dB(self, x: Tensor) -> Tensor:
        return clip_grad_mul(torch.ones_like(x), x, inclusive=self.scaled)

    def grad_dB(self, grad: Tensor, x: Tensor) -> Tensor:
        return clip_grad_mul(grad, x, inclusive=self.scaled)

    def apply(self, x: Tensor, training: bool = True, **learned: Tensor) -> Tensor:
        if self.scaled and x.dim() > 1:
            return scaled_sign(x, self)
        return quantize_eagerly(x, self)

    def deploy(self, x: Tensor, **learned: Tensor) -> Tensor:
        with torch.no_grad():
            out = sign(x)
            return out.mul_(sample_mean_abs(x)) if self.scaled and x.dim() > 1 else out


@register_activation("approx-sign")
class ApproxSign(_SignAct):
    """F(x) = sign(x), B'(x) = 2 − 2|x| for |x| < 1 else 0; B(x) = the piecewise quadratic
    2x + x² (x < 0), 2x − x² (x ≥ 0) clipped to ±1 (Liu et al., Bi-Real Net, ECCV 2018)."""

    formulas = ("sign(x)", "max(0, 2 − 2|x|)", "—")

    def B(self, x: Tensor) -> Tensor:
        c = torch.clamp(x, -1.0, 1.0)
        return 2 * c - c * c.abs()

    def dB(self, x: Tensor) -> Tensor:
        return approx_sign_grad(x)

    def grad_dB(self, grad: Tensor, x: Tensor) -> Tensor:
        return approx_sign_grad_mul(grad, x)


@register_activation("xnor++-sign")
class XnorPlusPlusSign(SteSign):
    """XNOR-Net++'s layer (BiBench's ``XNORPlusPlusConv2d``): F(x) = sign(x), B'(x) = 1[|x| ≤ 1] on the
    input, and the output y of the binary convolution multiplied by h ⊗ w, two learnable factors over the
    output's rows and columns (``h_scale`` (1, 1, 2000, 1), ``w_scale`` (1, 1, 1, 2000), ones at
    initialisation, the first H and W entries used); the output-channel factor o is the weight quantizer's
    (``xnor++``). A linear layer has no spatial factors (BiBench's ``XNORPlusPlusLinear``)."""

    scales_output = True
    max_size = 2000

    def layer_parameters(self, layer: nn.Module) -> dict[str, Tensor]:
        if layer.weight.dim() != 4:
            return {}
        return {"h_scale": torch.ones(1, 1, self.max_size, 1), "w_scale": torch.ones(1, 1, 1, self.max_size)}

    def apply(self, x: Tensor, training: bool = True, **learned: Tensor) -> Tensor:
        return quantize_eagerly(x, self)

    def deploy(self, x: Tensor, **learned: Tensor) -> Tensor:
        with torch.no_grad():
            return self.F(x)

    def output(self, y: Tensor, h_scale: Tensor | None = None, w_scale: Tensor | None = None) -> Tensor:
        if h_scale is None:
            return y
        if y.shape[-2] > self.max_size or y.shape[-1] > self.max_size:
            raise ValueError(f"xnor++: output of {y.shape[-2]}x{y.shape[-1]} exceeds the {self.max_size} "
                             "learnable row/column factors")
        # (h ⊗ w) first: one (H, W) factor, so the full-size output is multiplied once. A one-pass C backward
        # (grad·f and Σ grad·y together) measured slower than autograd's two ATen passes (XNOR++ step 1.28 vs
        # 1.19 of fp on resnet20-bireal, batch 128, 2 cores), so the product is plain ATen, traceable as it is.
        f = h_scale[0, 0, :y.shape[-2], :].to(y.dtype) * w_scale[0, 0, :, :y.shape[-1]].to(y.dtype)
        return y * f


@register_activation("rsign")
class RSign(ApproxSign):
    """ReActNet's RSign (Liu et al., ECCV 2020; code ``liuzechun/ReActNet``; BiBench's ``ReActConv2d``):
    F(x) = sign(x + β) with a learnable threshold β per input channel (BiBench's ``channel_threshold``,
    initialised to 0), backward ApproxSign'(x + β); the gradient reaching β is Σ grad·ApproxSign'(x + β).
    Deployed: sign(x + β)."""

    formulas = ("sign(x + β)", "max(0, 2 − 2|x + β|)", "—")

    def layer_parameters(self, layer: nn.Module) -> dict[str, Tensor]:
        if isinstance(layer, nn.Linear):
            return {"beta": torch.zeros(layer.in_features)}
        channels = layer.in_channels
        return {"beta": torch.zeros((1, channels) + (1,) * (layer.weight.dim() - 2))}

    def apply(self, x: Tensor, training: bool = True, beta: Tensor | None = None) -> Tensor:
        return rsign(x, beta)

    def deploy(self, x: Tensor, beta: Tensor | None = None) -> Tensor:
        with torch.no_grad():
            return sign(x + beta.to(x.dtype))


@register_activation("recu-sign")
class ReCUSign(ApproxSign):
    """ReCU's activation (Xu et al., ICCV 2021; code ``z-hXu/ReCU``): F(x) = sign(x); in training the
    backward is ApproxSign' evaluated at x̂ = x / sqrt(Var(x) + 1e-5), the variance per sample over all other
    dimensions (with its own gradient through the normalisation, as the official code); sign(x̂) = sign(x),
    so the deployed form is sign(x)."""

    formulas = ("sign(x)", "ApproxSign'(x/σ(x))", "—")

    def apply(self, x: Tensor, training: bool = True, **learned: Tensor) -> Tensor:
        if training and x.dim() > 1:
            return recu_sign(x)
        return quantize_eagerly(x, self)


@register_activation("dorefa")
class DoReFaAct(ActivationQuantizer):
    """DoReFa-Net's 1-bit activation (Zhou et al., 2016). As BiBench's ``DoReFaConv2d`` (the default, set by
    the ``dorefa`` method's ``form = "bibench"``): F(x) = sign(x), B'(x) = 1[|x| ≤ 1] (the clamp estimator).
    ``unipolar`` (``form = "tensorpack"``: tensorpack ``examples/DoReFa-Net``): F(x) = round(clip(x, 0, 1))
    ∈ {0, 1} (0.5 ↦ 0, round half to even as ``tf.round``), B'(x) = 1[0 ≤ x ≤ 1] (straight through the
    rounding, the clip's own derivative)."""

    unipolar = False
    formulas = ("sign(x) (form tensorpack: round(clip(x, 0, 1)))", "1[|x| ≤ 1] (form tensorpack: 1[0 ≤ x ≤ 1])", "—")

    @property
    def levels(self) -> str:
        return "unipolar" if self.unipolar else "sign"

    def F(self, x: Tensor) -> Tensor:
        if not self.unipolar:
            return sign(x)
        # round(clip(x, 0, 1)) with half to even is 1 exactly where x > 0.5: one comparison written as x's dtype
        if not x.is_floating_point():
            return torch.round(torch.clamp(x, 0.0, 1.0))
        return torch.gt(x.detach(), 0.5, out=torch.empty_like(x, requires_grad=False))

    def B(self, x: Tensor) -> Tensor:
        return torch.clamp(x, 0.0 if self.unipolar else -1.0, 1.0)

    def dB(self, x: Tensor) -> Tensor:
        return self.grad_dB(torch.ones_like(x), x)

    def grad_dB(self, grad: Tensor, x: Tensor) -> Tensor:
        if not self.unipolar:
            return clip_grad_mul(grad, x, inclusive=True)
        fused = kernels.unit_interval_backward(grad, x)
        if fused is not None:
            return fused
        # 1[x ≥ 0] as x's dtype (−0.0 included), times grad, then 0 where x > 1
        inside = torch.ge(x, 0.0, out=torch.empty_like(x)).mul_(grad)
        return torch.ops.aten.hardtanh_backward.grad_input(inside, x, -1.0, just_above(1.0, x.dtype),
                                                           grad_input=inside)


@register_activation("fda-sign")
class FDASign(FourierNoise, _SignAct):
    """FDA (Xu et al., NeurIPS 2021; code ``xuyixing0707/FDA-BNN``; BiBench's ``FDAConv2d``): F(x) = sign(x),
    B'(x) = (4ω/π)·Σ_{i=0}^{n} cos((2i+1)ωx) for |x| ≤ 1 and 0 outside: the derivative of the first n + 1
    terms of the square wave's Fourier series (4/π)·Σ sin((2i+1)ωx)/(2i+1). ω = 0.1; n goes from 9 to 18
    over training and is used rounded down (the official code: n = 9 + ⌊9·epoch/epochs⌋).

    Noise adaptation (``noise``, set by the ``fda`` method, on by default): the training forward and the F(w)
    model add λ·e(x) to sign(x), e(x) = W₂·relu(W₁·x_p) + 0.1·sin(x) over the C channels at each position p
    (the code's ``NoiseAdaption_a``; W₁: C/64 × C, W₂: C × C/64, ``<layer>.input_quantizer.noise_fc1``/
    ``noise_fc2``, none when C < 64), λ(t) = 0.05·(1 + cos(πt)); gradients flow through e as well. The
    deployed input is sign(x).
    """

    schedules = {"n": (9.0, 18.0)}
    constants = {"omega": 0.1}
    bounds = {"n": non_negative(), "omega": positive()}
    formulas = ("sign(x) + λ·e(x)", "(4ω/π)Σ_{i≤n} cos((2i+1)ωx)·1[|x| ≤ 1] + λ·e'(x)", "—")
    noise = True

    def dB(self, x: Tensor) -> Tensor:
        return self.fourier_grad(x)

    def grad_dB(self, grad: Tensor, x: Tensor) -> Tensor:
        return self.fourier_grad_mul(grad, x)

    def layer_parameters(self, layer: nn.Module) -> dict[str, Tensor]:
        channels = layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels
        return noise_parameters(channels) if self.noise else {}

    def apply(self, x: Tensor, training: bool = True, **noise: Tensor) -> Tensor:
        if torch.compiler.is_compiling():  # one graph: ⌊n⌋ and λ read from the schedule tensors
            return traceable.fda_sign(x, self, **noise)
        if self.noise and x.dim() >= 2 and not noise and kernels.usable(x):
            coefficients = fourier_series_coefficients(math.floor(self.n), float(self.omega))
            if coefficients is not None:  # sign(x) + (0.1·λ)·sin(x) and its backward, one pass each
                return _fda_noisy_sign(x, self, coefficients)
        out = quantize_eagerly(x, self)
        if not self.noise or x.dim() < 2:
            return out
        if not noise:  # no hidden layer (fewer than 64 channels): λ·e(x) = (0.1·λ)·sin(x), one scaling pass
            return out + torch.sin(x).mul_(0.1 * self.noise_alpha)
        residual = noise_residual(x.movedim(1, -1), **noise).movedim(-1, 1)
        return out + residual.mul_(self.noise_alpha)

    def deploy(self, x: Tensor, **noise: Tensor) -> Tensor:
        with torch.no_grad():
            return sign(x)


class _FDANoisySignFunction(torch.autograd.Function):
    """FDA's training activation in a layer without hidden noise layers (fewer than 64 inputs): the forward
    sign(x) + c·sin(x), c = 0.1·λ(t); the backward grad·B'(x) + (grad·c)·cos(x), B' FDA's Fourier series
    (``fourier_sign_grad_mul``): what autograd gives for ``FDASign.apply``'s eager form
    ``quantize_eagerly(x) + sin(x)·c``, in one pass each way (``methods.kernels.fda_forward/fda_backward``;
    sin and cos within an ulp of ATen's), the eager form where the kernel does not apply to the gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, method: "FDASign", coefficients: tuple[float, ...]) -> Tensor:
        c = 0.1 * method.noise_alpha
        out = kernels.fda_forward(x, c)
        if out is None:
            out = sign(x) + torch.sin(x).mul_(c)
        ctx.c, ctx.coefficients, ctx.n, ctx.omega = c, coefficients, math.floor(method.n), method.omega
        ctx.save_for_backward(x)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        fused = kernels.fda_backward(grad, x, ctx.coefficients, ctx.c)
        if fused is None:
            fused = fourier_sign_grad_mul(grad, x, ctx.n, ctx.omega) + torch.mul(grad, ctx.c).mul_(torch.cos(x))
        return fused, None, None


def _fda_noisy_sign(x: Tensor, method: "FDASign", coefficients: tuple[float, ...]) -> Tensor:
    if torch.compiler.is_compiling():  # one graph (methods.traceable)
        return traceable.fda_noisy_sign(x, method)
    return _FDANoisySignFunction.apply(x, method, coefficients)


