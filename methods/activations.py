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

import functools
import math

import torch
from torch import Tensor, nn

from . import kernels
from .base import ActivationQuantizer, get_activation_class, non_negative, positive, quantize_eagerly, register_activation
from .functional import clip_grad_mul, just_above, sign

def create_activation(name: str, **params) -> ActivationQuantizer:
    return get_activation_class(name)(**params)


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
def _fourier_series_coefficients(n: int, omega: float) -> tuple[float, ...] | None:
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
      series in u = x², Σ_k a_k·u^k (``_fourier_series_coefficients``, truncated 1e-9·B'(0) short of the sum,
      ~10 terms), by Horner's rule, one fused pass (``addcmul``) per term; beyond |x| = 1 the values are
      meaningless but the caller masks them;
    * otherwise (float64, or higher frequencies) the closed form: with N = n + 1 terms and θ = ωx,
      Σ_{i=0}^{N−1} cos((2i+1)θ) = sin(2Nθ)/(2 sin θ) (the telescoping 2 sin θ cos((2i+1)θ) = sin((2i+2)θ) −
      sin(2iθ)), whose limit at θ → 0 is N; so the factor is (2ω/π)·sin(2Nθ)/sin θ, evaluated at |x| floored
      at 1e-20 (B' is even, and equal to its limit there to every float's precision): two sines instead of N
      cosines (for ω > π/2, where sin θ can vanish, the direct sum)."""
    n = int(n)
    xf = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    coefficients = _fourier_series_coefficients(n, float(omega)) if xf.dtype == torch.float32 else None
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
    coefficients = _fourier_series_coefficients(int(n), float(omega))  # cached per (n, ω)
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


class _SignAct(ActivationQuantizer):
    forward_formula = "sign(x)"

    def F(self, x: Tensor) -> Tensor:
        return sign(x)


@register_activation("ste-sign")
class SteSign(_SignAct):
    """F(x) = sign(x), B'(x) = 1[|x| ≤ 1]: BNN's clipped straight-through estimator (Hubara et al. 2016)."""

    backward_formula = "1[|x| ≤ 1]"

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

    forward_formula = "K·sign(x) (form xnor-net: sign(x))"
    backward_formula = "1[|x| ≤ 1] (form xnor-net: 1[|x| < 1])"
    scaled = True

    def dB(self, x: Tensor) -> Tensor:
        return clip_grad_mul(torch.ones_like(x), x, inclusive=self.scaled)

    def grad_dB(self, grad: Tensor, x: Tensor) -> Tensor:
        return clip_grad_mul(grad, x, inclusive=self.scaled)

    def apply(self, x: Tensor, training: bool = True, **learned: Tensor) -> Tensor:
        if self.scaled and x.dim() > 1:
            return _scaled_sign(x, self)
        return quantize_eagerly(x, self)

    def deploy(self, x: Tensor, **learned: Tensor) -> Tensor:
        with torch.no_grad():
            out = sign(x)
            return out.mul_(sample_mean_abs(x)) if self.scaled and x.dim() > 1 else out


def sample_mean_abs(x: Tensor) -> Tensor:
    """K = mean |x| per sample (over every dimension but the first), detached, shaped to broadcast."""
    with torch.no_grad():
        return x.abs().mean(dim=tuple(range(1, x.dim())), keepdim=True)


@register_activation("approx-sign")
class ApproxSign(_SignAct):
    """F(x) = sign(x), B'(x) = 2 − 2|x| for |x| < 1 else 0; B(x) = the piecewise quadratic
    2x + x² (x < 0), 2x − x² (x ≥ 0) clipped to ±1 (Liu et al., Bi-Real Net, ECCV 2018)."""

    backward_formula = "max(0, 2 − 2|x|)"

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
        # (h ⊗ w) first: one (H, W) factor, so the full-size output is multiplied once (and once back, the
        # factor's gradient in the same pass where the kernels apply)
        f = h_scale[0, 0, :y.shape[-2], :].to(y.dtype) * w_scale[0, 0, :, :y.shape[-1]].to(y.dtype)
        return _scale_positions(y, f) if kernels.usable(y) else y * f


@register_activation("rsign")
class RSign(ApproxSign):
    """ReActNet's RSign (Liu et al., ECCV 2020; code ``liuzechun/ReActNet``; BiBench's ``ReActConv2d``):
    F(x) = sign(x + β) with a learnable threshold β per input channel (BiBench's ``channel_threshold``,
    initialised to 0), backward ApproxSign'(x + β); the gradient reaching β is Σ grad·ApproxSign'(x + β).
    Deployed: sign(x + β)."""

    forward_formula = "sign(x + β)"
    backward_formula = "max(0, 2 − 2|x + β|)"

    def layer_parameters(self, layer: nn.Module) -> dict[str, Tensor]:
        if isinstance(layer, nn.Linear):
            return {"beta": torch.zeros(layer.in_features)}
        channels = layer.in_channels
        return {"beta": torch.zeros((1, channels) + (1,) * (layer.weight.dim() - 2))}

    def apply(self, x: Tensor, training: bool = True, beta: Tensor | None = None) -> Tensor:
        return _rsign(x, beta)

    def deploy(self, x: Tensor, beta: Tensor | None = None) -> Tensor:
        with torch.no_grad():
            return sign(x + beta.to(x.dtype))


@register_activation("recu-sign")
class ReCUSign(ApproxSign):
    """ReCU's activation (Xu et al., ICCV 2021; code ``z-hXu/ReCU``): F(x) = sign(x); in training the
    backward is ApproxSign' evaluated at x̂ = x / sqrt(Var(x) + 1e-5), the variance per sample over all other
    dimensions (with its own gradient through the normalisation, as the official code); sign(x̂) = sign(x),
    so the deployed form is sign(x)."""

    backward_formula = "ApproxSign'(x/σ(x))"

    def apply(self, x: Tensor, training: bool = True, **learned: Tensor) -> Tensor:
        if training and x.dim() > 1:
            return _recu_sign(x)
        return quantize_eagerly(x, self)


@register_activation("dorefa")
class DoReFaAct(ActivationQuantizer):
    """DoReFa-Net's 1-bit activation (Zhou et al., 2016). As BiBench's ``DoReFaConv2d`` (the default, set by
    the ``dorefa`` method's ``form = "bibench"``): F(x) = sign(x), B'(x) = 1[|x| ≤ 1] (the clamp estimator).
    ``unipolar`` (``form = "tensorpack"``: tensorpack ``examples/DoReFa-Net``): F(x) = round(clip(x, 0, 1))
    ∈ {0, 1} (0.5 ↦ 0, round half to even as ``tf.round``), B'(x) = 1[0 ≤ x ≤ 1] (straight through the
    rounding, the clip's own derivative)."""

    unipolar = False
    forward_formula = "sign(x) (form tensorpack: round(clip(x, 0, 1)))"
    backward_formula = "1[|x| ≤ 1] (form tensorpack: 1[0 ≤ x ≤ 1])"

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
class FDASign(_SignAct):
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
    forward_formula = "sign(x) + λ·e(x)"
    backward_formula = "(4ω/π)Σ_{i≤n} cos((2i+1)ωx)·1[|x| ≤ 1] + λ·e'(x)"
    noise = True

    def set_progress(self, t: float) -> None:
        super().set_progress(t)
        self.noise_alpha = noise_strength(self.progress) if self.noise else 0.0

    def dB(self, x: Tensor) -> Tensor:
        return fourier_sign_grad(x, math.floor(self.n), self.omega)

    def grad_dB(self, grad: Tensor, x: Tensor) -> Tensor:
        return fourier_sign_grad_mul(grad, x, math.floor(self.n), self.omega)

    def layer_parameters(self, layer: nn.Module) -> dict[str, Tensor]:
        channels = layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels
        return noise_parameters(channels) if self.noise else {}

    def apply(self, x: Tensor, training: bool = True, **noise: Tensor) -> Tensor:
        if self.noise and x.dim() >= 2 and not noise and kernels.usable(x):
            coefficients = _fourier_series_coefficients(math.floor(self.n), float(self.omega))
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


@torch.compiler.disable
def _fda_noisy_sign(x: Tensor, method: "FDASign", coefficients: tuple[float, ...]) -> Tensor:
    return _FDANoisySignFunction.apply(x, method, coefficients)


class _PositionScaleFunction(torch.autograd.Function):
    """y·f for an f of one value per output position (XNOR-Net++'s h ⊗ w, (H, W)), broadcast over the batch
    and the channels; backward grad·f to y and Σ_{n,c} grad·y to f (what autograd gives for ``y * f``), the
    two in one pass (``methods.kernels.position_scale_backward``; the sum in double, so its last bits are not
    ATen's), else eagerly."""

    @staticmethod
    def forward(ctx, y: Tensor, f: Tensor) -> Tensor:
        ctx.save_for_backward(y, f)
        return y * f

    @staticmethod
    def backward(ctx, grad: Tensor):
        y, f = ctx.saved_tensors
        fused = kernels.position_scale_backward(grad, y, f) if ctx.needs_input_grad[1] else None
        if fused is not None:
            return fused
        grad_f = torch.mul(grad, y).sum_to_size(f.shape) if ctx.needs_input_grad[1] else None
        return grad * f, grad_f


@torch.compiler.disable
def _scale_positions(y: Tensor, f: Tensor) -> Tensor:
    return _PositionScaleFunction.apply(y, f)


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


@torch.compiler.disable
def _scaled_sign(x: Tensor, method: "XnorSign") -> Tensor:
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


@torch.compiler.disable
def _rsign(x: Tensor, beta: Tensor) -> Tensor:
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


@torch.compiler.disable
def _recu_sign(x: Tensor) -> Tensor:
    return _ReCUSignFunction.apply(x)


class InputQuantizer(nn.Module):
    """Attached to a binarized layer as ``<layer>.input_quantizer``; a forward pre-hook on the layer replaces
    its input by ``quantizer.apply(x)`` (training forward and F(w) model) or ``quantizer.deploy(x)``
    (``deployed = True``). Owns the quantizer's learnable per-layer tensors as ``nn.Parameter``s."""

    def __init__(self, quantizer: ActivationQuantizer, layer: nn.Module):
        super().__init__()
        self.quantizer = quantizer
        self.deployed = False
        self._names = []
        for name, value in quantizer.layer_parameters(layer).items():
            self.register_parameter(name, nn.Parameter(value.to(layer.weight.device, torch.float32)))
            self._names.append(name)

    def learned(self) -> dict[str, Tensor]:
        return {name: getattr(self, name) for name in self._names}

    def forward(self, x: Tensor) -> Tensor:
        if self.deployed:
            return self.quantizer.deploy(x, **self.learned())
        return self.quantizer.apply(x, training=self.training, **self.learned())

    def extra_repr(self) -> str:
        return f"{self.quantizer.name}, deployed={self.deployed}"


    def scale_output(self, y: Tensor) -> Tensor:
        """The quantizer's factor on the layer's output (XNOR-Net++'s h ⊗ w), training and deployed alike."""
        return self.quantizer.output(y, **self.learned())


def _pre_hook(layer: nn.Module, args):
    return (layer.input_quantizer(args[0]), *args[1:])


def _output_hook(layer: nn.Module, args, output):
    return layer.input_quantizer.scale_output(output)


def attach_input_quantizer(layer: nn.Module, quantizer: ActivationQuantizer) -> InputQuantizer:
    """Add ``layer.input_quantizer`` and the forward pre-hook that applies it."""
    module = InputQuantizer(quantizer, layer)
    layer.add_module("input_quantizer", module)
    layer._proxbench_input_hook = layer.register_forward_pre_hook(_pre_hook)
    if quantizer.scales_output:
        layer._proxbench_output_hook = layer.register_forward_hook(_output_hook)
    return module
