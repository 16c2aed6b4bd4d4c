"""The eight built-in methods of DESIGN.md §2, each a (F, B', hooks, schedule) tuple of the PC++ framework.

Reference: Lu, Yu, Li & Partovi Nia, "Understanding Neural Network Binarization with Forward and Backward
Proximal Quantizers", NeurIPS 2023. All maps act on the normalised weight x = w/α (see ``methods.base``);
with ``scale="none"``, α = 1 and they act on the raw latent. Every scheduled parameter moves linearly in
t = step/total_steps from ``*_start`` to ``*_end`` unless ``schedule="geometric"`` is asked for. Each method
declares the allowed values of its parameters in ``bounds`` (ρ ≥ 0, μ > 0, ``lq`` in {linear, clamp}).

The paper's exact text for reverse ProxConnect and its LQ is not available to us; ``_prox`` below and the
``rpc``/``pq`` hooks are our reading (rPC evaluates the gradient at the latent and updates from its prox,
mirroring PC which evaluates it at the quantized point and updates the latent). A corrected reading is a
one-line change in ``_prox``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Method, non_negative, one_of, positive, register_method
from .functional import clamp_quantizer, linear_quantizer, sign, sign_swish, sign_swish_grad

LQ_FORMS = {"linear": linear_quantizer, "clamp": clamp_quantizer}


class _LinearQuantizerMixin:
    """Shared ρ-parameterised LQ: ``lq = "linear"`` (default, (x + ρ·sign x)/(1+ρ)) or ``"clamp"``."""

    constants = {"lq": "linear"}
    schedules = {"rho": (0.01, 10.0)}
    bounds = {"rho": non_negative(), "lq": one_of(*LQ_FORMS)}  # ρ = 0: LQ is the identity

    def linear_quantize(self, x: Tensor) -> Tensor:
        return LQ_FORMS[self._constants["lq"]](x, self.rho)

    def _prox(self, w: Tensor) -> None:
        """w ← α·LQ_ρ(w/α), in place (the proximal step of rPC and PQ)."""
        with torch.no_grad():
            alpha = self.alpha(w)
            w.copy_(alpha * self.linear_quantize(w / alpha))


class _SignForward(Method):
    """Methods that compute with the binary weights themselves: F(x) = sign(x), so α·F(w/α) is exactly
    ``export(w)`` (``forward_is_export``) and only B' tells them apart."""

    forward_is_export = True
    forward_formula = "sign(x)"

    def F(self, x: Tensor) -> Tensor:
        return sign(x)


@register_method("fp")
class FullPrecision(Method):
    """Full-precision baseline: F(x) = x, B'(x) = 1, export is w itself (nothing is binarized)."""

    identity_backward = True
    binarizes = False
    forward_formula, backward_formula = "x", "1"

    def forward(self, w: Tensor) -> Tensor:
        return w

    def F(self, x: Tensor) -> Tensor:
        return x

    def export(self, w: Tensor) -> Tensor:
        return w.detach().clone()


@register_method("bc")
class BinaryConnect(_SignForward):
    """BinaryConnect (Courbariaux et al., 2015): F(x) = sign(x), B'(x) = 1 (straight-through).

    sign(0) = +1. No parameters.
    """

    identity_backward = True
    backward_formula = "1"


@register_method("pc")
class ProxConnect(_LinearQuantizerMixin, Method):
    """ProxConnect (Dockhorn et al., 2021): F(x) = LQ_ρ(x) = (x + ρ·sign x)/(1+ρ), B'(x) = 1.

    ρ goes linearly from 0.01 to 10 (F from ≈identity to ≈sign). LQ_ρ(0) = ρ/(1+ρ).
    """

    identity_backward = True
    forward_formula, backward_formula = "LQ_ρ(x)", "1"

    def F(self, x: Tensor) -> Tensor:
        return self.linear_quantize(x)


@register_method("rpc")
class ReverseProxConnect(_LinearQuantizerMixin, Method):
    """Reverse ProxConnect: F(x) = x, B'(x) = 1; before each step w ← α·LQ_ρ(w/α); ρ 0.01 → 10.

    The gradient is taken at the latent and the update is applied to its prox (our reading, see module doc).
    """

    identity_backward = True
    forward_formula, backward_formula = "x", "1"
    hooks_formula = "before_step: w ← α·LQ_ρ(w/α)"

    def F(self, x: Tensor) -> Tensor:
        return x

    def forward(self, w: Tensor) -> Tensor:
        return w  # α·(w/α) = w exactly; skip the arithmetic

    def before_step(self, w: Tensor) -> None:
        self._prox(w)


@register_method("pq")
class ProxQuant(_LinearQuantizerMixin, Method):
    """ProxQuant (Bai et al., 2019): F(x) = x, B'(x) = 1; after each step w ← α·LQ_ρ(w/α); ρ 0.01 → 10.

    A prox-gradient method with "eager" projection: the latent itself is pulled towards ±α.
    """

    identity_backward = True
    forward_formula, backward_formula = "x", "1"
    hooks_formula = "after_step: w ← α·LQ_ρ(w/α)"

    def F(self, x: Tensor) -> Tensor:
        return x

    def forward(self, w: Tensor) -> Tensor:
        return w

    def after_step(self, w: Tensor) -> None:
        self._prox(w)


@register_method("bnn")
class BNN(_SignForward):
    """BNN (Hubara et al., 2016): F(x) = sign(x), B'(x) = 1 if |x| ≤ 1 else 0 (B = hardtanh).

    At |x| = 1 the factor is 1. No parameters.
    """

    backward_formula = "1[|x| ≤ 1]"

    def B(self, x: Tensor) -> Tensor:
        return torch.clamp(x, -1.0, 1.0)

    def dB(self, x: Tensor) -> Tensor:
        return (x.abs() <= 1.0).to(x.dtype)


@register_method("bnn+")
class BNNPlus(_SignForward):
    """BNN+ (Darabi et al., 2018): F(x) = sign(x), B'(x) = SS'_μ(x) with μ = 5 constant.

    SS'_μ(0) = μ; the forward is already binary, so μ needs no schedule.
    """

    constants = {"mu": 5.0}
    bounds = {"mu": positive()}
    backward_formula = "SS'_μ(x)"

    def B(self, x: Tensor) -> Tensor:
        return sign_swish(x, self.mu)

    def dB(self, x: Tensor) -> Tensor:
        return sign_swish_grad(x, self.mu)


@register_method("bnn++")
class BNNPlusPlus(Method):
    """BNN++ (the PC++ paper): F(x) = SS_μ(x), B'(x) = SS'_μ(x); μ from 5 to 30.

    F and B are the same smooth map, so the backward is its exact derivative; at μ = 30 the forward is
    (near) binary and export α·sign(w) changes little. SS_μ(0) = 0, SS'_μ(0) = μ.
    """

    schedules = {"mu": (5.0, 30.0)}
    bounds = {"mu": positive()}  # SS_0 ≡ 0; a negative μ flips the sign of F
    forward_formula, backward_formula = "SS_μ(x)", "SS'_μ(x)"

    def F(self, x: Tensor) -> Tensor:
        return sign_swish(x, self.mu)

    def B(self, x: Tensor) -> Tensor:
        return sign_swish(x, self.mu)

    def dB(self, x: Tensor) -> Tensor:
        return sign_swish_grad(x, self.mu)
