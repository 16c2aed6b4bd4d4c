"""The eight built-in methods, each a (F, B', hooks, schedule) tuple of the PC++ framework.

Reference: Lu, Yu, Li & Partovi Nia, "Understanding Neural Network Binarization with Forward and Backward
Proximal Quantizers", NeurIPS 2023. The maps act on x = w/α (see ``methods.method``). The default unit
(``default_scale``) was chosen by measurement (``bench/grids/ablation-scale.toml``, results in
``results/ablation-scale/``, the paper's μ and ρ unchanged):

* ``scale = "none"`` (α = 1, the raw latent, as every reference implementation) for the methods whose
  forward is sign or the identity: BC, BNN, BNN+ (μ = 5 is larq's and BNN+'s value on raw latents; with
  α-units SS'_5 turns negative below the average weight) and the proximal methods rPC and PQ (their prox
  pulls the latent to ±1 and the clip keeps it in [−1, 1], as in ProxQuant; towards ±α instead, the target
  moves with α and the deployed model trails the F(w) model by 3 points);
* ``scale = "tensor"`` (α = mean |w| of the tensor) for the methods whose forward is a smooth approximation
  of sign, PC's LQ_ρ and BNN++'s SS_μ: their parameter says how close F is to sign *relative to the weights'
  size*. On raw latents (|w| ≈ 0.05 in a small CNN) SS_30 is far from binary, and the deployed BNN++ trails
  its F(w) model by 4.9 points (86.2 against 91.1); per tensor the two agree within 0.1.

Every
scheduled parameter moves linearly in t = step/total_steps from ``*_start`` to ``*_end`` unless
``schedule="geometric"`` is asked for. Each method declares the allowed values of its parameters in
``bounds`` (ρ ≥ 0, μ > 0, ``lq`` in {linear, clamp}, ...). F and B' read a scheduled parameter from its
0-d tensor (``self.tensors.rho``, ``self.tensors.mu``, updated in place by ``set_progress``) so that
``torch.compile`` neither breaks nor recompiles at a binarized layer. The hooks use the float attributes
(``self.rho``) when given a float lr (the eager step) and the tensors when given a 0-d tensor lr (the
captured step, which traces them into its update graph: ``Traits(hooks="traced")``; PQ's freeze is then a
select on ``self.tensors.progress`` instead of a Python branch).

Proximal steps (rPC, PQ) are proximal-gradient steps: their strength is η·ρ, η the learning rate of the
step (``_ProximalStep``). Latent clipping (``clip``) follows each method's reference: BinaryConnect, BNN,
BNN+ (larq) and ProxQuant clip to [−1, 1]. The paper's exact text for reverse ProxConnect is not available to
us; its hook is our reading (rPC evaluates the gradient at the latent and updates from its prox, mirroring PC
which evaluates it at the quantized point and updates the latent), a one-line change in
``ReverseProxConnect.before_step_all``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .bounds import Bound, non_negative, one_of, positive
from .method import Method, Traits
from .registry import register_method
from .batched import (alphas_all, linear_quantize_all, sign_all, sign_swish_all, sign_swish_grad_all,
                      soft_sign_prox_all)
from .functional import clamp_quantizer, clip_grad_mul, linear_quantizer, sign, sign_swish, sign_swish_grad, soft_sign_prox

LQ_FORMS = {"linear": linear_quantizer, "clamp": clamp_quantizer}


class _LinearQuantizerMixin:
    """Shared ρ-parameterised LQ: ``lq = "linear"`` (default, (x + ρ·sign x)/(1+ρ)) or ``"clamp"``."""

    constants = {"lq": "linear"}
    schedules = {"rho": (0.01, 10.0)}
    bounds = {"rho": non_negative(), "lq": one_of(*LQ_FORMS)}  # ρ = 0: LQ is the identity

    def linear_quantize(self, x: Tensor, rho: float | Tensor | None = None) -> Tensor:
        """LQ_ρ(x) with the current ρ (the tensor ``self.tensors.rho``, for F) or a given strength (the hooks)."""
        return LQ_FORMS[self._constants["lq"]](x, self.tensors.rho if rho is None else rho)


class _ProximalStep(_LinearQuantizerMixin):
    """A proximal-gradient step on the latent: w ← α·prox_{η·ρ}(w/α), η the learning rate of the step.

    ProxQuant's official code (``main_binary_reg.py``) applies its prox right after ``optimizer.step()``
    with strength ``curr_lr * reg``: the regulariser's weight ρ is a rate, and a step of size η moves the
    latent by η·ρ of it, as a gradient step on ρ·R(w) would. The prox is
    ``prox = "lq"``: LQ_{ηρ}(x) = (x + ηρ·sign x)/(1 + ηρ), the PC++ paper's linear quantizer (prox of
    (ηρ/2)·dist(x, {±1})²; a fraction ηρ/(1+ηρ) of the way to ±1), or
    ``prox = "l1"``: ProxQuant's soft threshold, |x| moves ηρ towards 1 (prox of ηρ·dist(x, {±1})).
    """

    constants = {**_LinearQuantizerMixin.constants, "prox": "lq"}
    bounds = {"prox": one_of("lq", "l1")}

    def prox_value(self, w: Tensor, lr: float | Tensor) -> Tensor:
        """α·prox_{η·ρ}(w/α) with η = ``lr``: a float lr uses the float ρ (the eager step), a 0-d tensor lr
        the tensor ρ (``self.tensors.rho``, the captured step)."""
        strength = lr * (self.tensors.rho if isinstance(lr, Tensor) else self.rho)
        with torch.no_grad():
            alpha = self.alpha(w)
            x = w / alpha
            x = soft_sign_prox(x, strength) if self.prox == "l1" else self.linear_quantize(x, strength)
            return alpha * x

    def prox_step(self, w: Tensor, lr: float | Tensor) -> None:
        """w ← α·prox_{η·ρ}(w/α) in place."""
        with torch.no_grad():
            w.copy_(self.prox_value(w, lr))

    def prox_all(self, ws: list[Tensor], lr: float | Tensor) -> None:
        """w ← α·prox_{η·ρ}(w/α) for every latent of ``ws``, in place, with multi-tensor ops (``prox_value``'s
        bits): with α = 1 and the LQ prox as in-place arithmetic on the latents, w ← (w + s·sign w)/(1 + s),
        s = η·ρ (no copy: dynamo traces it on every torch we support); else value, then ``_foreach_copy_``."""
        strength = lr * (self.tensors.rho if isinstance(lr, Tensor) else self.rho)
        with torch.no_grad():
            alphas = None if self.scale == "none" else alphas_all(ws, self.scale)
            if alphas is None and self.prox != "l1" and self._constants["lq"] == "linear":
                linear_quantize_all(ws, strength, out=ws)
                return
            xs = ws if alphas is None else torch._foreach_div(ws, alphas)
            if self.prox == "l1":
                values = soft_sign_prox_all(xs, strength)
            else:
                values = [self.linear_quantize(x, strength) for x in xs]
            if alphas is not None:
                torch._foreach_mul_(values, alphas)
            torch._foreach_copy_(ws, values)


class _SignForward(Method):
    """Methods that compute with the binary weights themselves: F(x) = sign(x), so α·F(w/α) is exactly
    ``export(w)`` (``forward_is_export``) and only B' tells them apart."""

    traits = Traits(forward_is_export=True)

    def F(self, x: Tensor) -> Tensor:
        return sign(x)

    def F_all(self, xs: list[Tensor]) -> list[Tensor]:  # noqa: N802
        return sign_all(xs)


@register_method("fp")
class FullPrecision(Method):
    """Full-precision baseline: F(x) = x, B'(x) = 1, export is w itself (nothing is binarized)."""

    traits = Traits(binarizes=False, identity_backward=True, identity_forward=True)
    formulas = ("x", "1", "—")

    def F(self, x: Tensor) -> Tensor:
        return x


CLIP = {"clip": non_negative()}  # latent clipping bound; 0 turns it off


@register_method("bc")
class BinaryConnect(_SignForward):
    """BinaryConnect (Courbariaux, Bengio & David, NeurIPS 2015; code ``MatthieuCourbariaux/BinaryConnect``):
    F(x) = sign(x), B'(x) = 1 (straight-through); after every update the latent is clipped to [−clip, clip]
    (the paper's [−H, H] with H = 1). sign(0) = +1.
    """

    constants = {"clip": 1.0}
    bounds = CLIP
    traits = Traits(forward_is_export=True, identity_backward=True)
    formulas = ("sign(x)", "1", "clip w to [−1, 1]")


@register_method("pc")
class ProxConnect(_LinearQuantizerMixin, Method):
    """ProxConnect (Dockhorn, Yu, Sari, Zolnouri & Partovi Nia, "Demystifying and Generalizing BinaryConnect",
    NeurIPS 2021): F(x) = LQ_ρ(x) = (x + ρ·sign x)/(1+ρ), B'(x) = 1, x = w/α with α the tensor's mean |w|.

    ρ goes linearly from 0.01 to 10 (F from ≈identity to ≈sign). LQ_ρ(0) = ρ/(1+ρ). F is a map of the latent,
    not a step on it, so ρ is not scaled by the learning rate.
    """

    default_scale = "tensor"
    traits = Traits(identity_backward=True)
    formulas = ("LQ_ρ(x)", "1", "—")

    def F(self, x: Tensor) -> Tensor:
        return self.linear_quantize(x)

    def F_all(self, xs: list[Tensor]) -> list[Tensor]:  # noqa: N802
        if self._constants["lq"] != "linear":
            return super().F_all(xs)
        return linear_quantize_all(xs, self.tensors.rho)


@register_method("rpc")
class ReverseProxConnect(_ProximalStep, Method):
    """Reverse ProxConnect: F(x) = x, B'(x) = 1; before each step w ← α·prox_{η·ρ}(w/α); ρ 0.01 → 10.

    Our reading of the PC++ paper (its exact text for rPC is not available to us): PC takes the gradient at
    the quantized point and updates the latent; rPC takes it at the latent and applies the update to its
    prox. The prox is a proximal-gradient step like ProxQuant's, so its strength is η·ρ (η the learning
    rate of the step, see ``_ProximalStep``); ``prox = "lq"`` by default. No clipping (no reference clips).
    """

    traits = Traits(identity_backward=True, identity_forward=True, hooks="traced")  # α·(w/α) = w exactly
    formulas = ("x", "1", "before_step: w ← α·prox_{ηρ}(w/α)")

    def F(self, x: Tensor) -> Tensor:
        return x

    def before_step_all(self, ws: list[Tensor], lr: float | Tensor) -> None:
        self.prox_all(ws, lr)


@register_method("pq")
class ProxQuant(_ProximalStep, Method):
    """ProxQuant (Bai, Wang & Liberty, ICLR 2019; code ``allenbai01/ProxQuant``, ``main_binary_reg.py`` and
    ``reg.py``): F(x) = x, B'(x) = 1; after each optimizer step w ← α·prox_{η·ρ}(w/α), then w is clipped to
    [−clip, clip] (clip = 1, as the reference's ``bin_op.clip()``); ρ 0.01 → 10 (the PC++ paper's values).

    ``prox = "lq"`` (default): the PC++ paper's LQ as the prox, "similar to Bai et al."; ``prox = "l1"``:
    ProxQuant's own binary soft threshold. ``freeze_at`` (a fraction of training, 1 = never): from that
    point on the latents are hard-signed to ±α after every step and no prox is applied, like the reference's
    ``binary_freeze`` at epoch 200 of 300 (there the signed latents stop training; here re-signing after
    every step keeps them where they are, since one step never moves a weight by α).
    """

    constants = {**_ProximalStep.constants, "clip": 1.0, "freeze_at": 1.0}
    bounds = {**CLIP, "freeze_at": Bound(low=0.0, high=1.0, low_inclusive=False)}
    traits = Traits(identity_backward=True, identity_forward=True, hooks="traced")
    formulas = ("x", "1", "after_step: w ← α·prox_{ηρ}(w/α), clip to [−1, 1]")

    def F(self, x: Tensor) -> Tensor:
        return x

    def after_step_all(self, ws: list[Tensor], lr: float | Tensor) -> None:
        """``after_step`` on every latent with multi-tensor ops. Captured with ``freeze_at`` < 1: the prox, then
        w ← w·(1 − f) + e·f with f = 1[progress ≥ freeze_at] and e = α·sign(w) taken before the prox (exact for
        f ∈ {0, 1}, up to the sign of a zero), instead of a per-latent ``torch.where``."""
        if isinstance(lr, Tensor) and self.freeze_at < 1.0:
            with torch.no_grad():
                exports = self._exports(ws)
                self.prox_all(ws, lr)
                frozen = (self.tensors.progress >= self.freeze_at).to(ws[0].dtype)
                torch._foreach_mul_(ws, 1 - frozen)
                torch._foreach_mul_(exports, frozen)
                torch._foreach_add_(ws, exports)
        elif not isinstance(lr, Tensor) and self.progress >= self.freeze_at:
            with torch.no_grad():
                torch._foreach_copy_(ws, self._exports(ws))
        else:
            self.prox_all(ws, lr)

    def _exports(self, ws: list[Tensor]) -> list[Tensor]:
        """α·sign(w) of every latent (``export``)."""
        signs = sign_all(ws)
        if self.scale != "none":
            torch._foreach_mul_(signs, alphas_all(ws, self.scale))
        return signs


@register_method("bnn")
class BNN(_SignForward):
    """BNN (Hubara et al., NeurIPS 2016; code ``itayhubara/BinaryNet.pytorch``): F(x) = sign(x),
    B'(x) = 1 if |x| ≤ 1 else 0 (B = hardtanh, the clipped straight-through estimator); the latent is clipped
    to [−1, 1] after every update. At |x| = 1 the factor is 1.
    """

    constants = {"clip": 1.0}
    bounds = CLIP
    formulas = ("sign(x)", "1[|x| ≤ 1]", "clip w to [−1, 1]")

    def B(self, x: Tensor) -> Tensor:
        return torch.clamp(x, -1.0, 1.0)

    def dB(self, x: Tensor) -> Tensor:
        return (x.abs() <= 1.0).to(x.dtype)

    def grad_dB(self, grad: Tensor, x: Tensor) -> Tensor:
        return clip_grad_mul(grad, x, inclusive=True)


@register_method("bnn+")
class BNNPlus(_SignForward):
    """BNN+ (Darabi et al., 2018; larq's ``SwishSign`` quantizer): F(x) = sign(x), B'(x) = SS'_μ(x), μ = 5
    constant; latents clipped to [−1, 1] (larq pairs SwishSign with a weight clip constraint).

    SS'_μ(0) = μ; the forward is already binary, so μ needs no schedule.
    """

    constants = {"mu": 5.0, "clip": 1.0}
    bounds = {"mu": positive(), **CLIP}
    formulas = ("sign(x)", "SS'_μ(x)", "clip w to [−1, 1]")

    def B(self, x: Tensor) -> Tensor:
        return sign_swish(x, self.mu)

    def dB(self, x: Tensor) -> Tensor:
        return sign_swish_grad(x, self.mu)  # μ is a constant here: a float never recompiles

    def grad_dB_all(self, grads: list[Tensor], xs: list[Tensor]) -> list[Tensor]:  # noqa: N802
        return torch._foreach_mul(grads, sign_swish_grad_all(xs, self.mu))


@register_method("bnn++")
class BNNPlusPlus(Method):
    """BNN++ (Lu et al., NeurIPS 2023, the PC++ paper): F(x) = SS_μ(x), B'(x) = SS'_μ(x); μ from 5 to 30;
    x = w/α with α the tensor's mean |w| (see the module docstring for why).

    F and B are the same smooth map, so the backward is its exact derivative; at μ = 30 the forward is
    (near) binary and export α·sign(w) changes little. SS_μ(0) = 0, SS'_μ(0) = μ.
    """

    default_scale = "tensor"
    schedules = {"mu": (5.0, 30.0)}
    bounds = {"mu": positive()}  # SS_0 ≡ 0; a negative μ flips the sign of F
    formulas = ("SS_μ(x)", "SS'_μ(x)", "—")

    def F(self, x: Tensor) -> Tensor:
        return sign_swish(x, self.tensors.mu)

    def B(self, x: Tensor) -> Tensor:
        return sign_swish(x, self.tensors.mu)

    def dB(self, x: Tensor) -> Tensor:
        return sign_swish_grad(x, self.tensors.mu)

    def F_all(self, xs: list[Tensor]) -> list[Tensor]:  # noqa: N802
        return sign_swish_all(xs, self.tensors.mu)

    def grad_dB_all(self, grads: list[Tensor], xs: list[Tensor]) -> list[Tensor]:  # noqa: N802
        return torch._foreach_mul(grads, sign_swish_grad_all(xs, self.tensors.mu))
